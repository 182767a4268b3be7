"""The cost ledger read back: calls and tokens of a project or a user, in total and by model, purpose and tier."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from reverie.store import llm_usage


class UsageLine(BaseModel):
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def add(self, row: dict[str, Any]) -> None:
        self.calls += int(row["calls"])
        self.prompt_tokens += int(row["prompt_tokens"])
        self.completion_tokens += int(row["completion_tokens"])
        self.total_tokens = self.prompt_tokens + self.completion_tokens


class UsageTotals(UsageLine):
    project_id: str
    user_id: str | None = None
    by_model: dict[str, UsageLine] = Field(default_factory=dict)
    by_purpose: dict[str, UsageLine] = Field(default_factory=dict)
    by_tier: dict[str, UsageLine] = Field(default_factory=dict)


def usage_totals(db, project_id: str, user_id: str | None = None) -> UsageTotals:
    """Calls and tokens of a project (or of one of its users), in total and by model, purpose and tier."""
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        rows = llm_usage.sums(cur, project_id, user_id)
    totals = UsageTotals(project_id=project_id, user_id=user_id)
    for row in rows:
        totals.add(row)
        totals.by_model.setdefault(row["model"], UsageLine()).add(row)
        totals.by_purpose.setdefault(row["purpose"], UsageLine()).add(row)
        if row["tier"]:
            totals.by_tier.setdefault(row["tier"], UsageLine()).add(row)
    return totals


def job_usage(db, project_id: str, job_id: str) -> list[dict[str, Any]]:
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        return llm_usage.for_job(cur, project_id, job_id)
