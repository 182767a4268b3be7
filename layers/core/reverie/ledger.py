"""The cost ledger: tokens and model of every LLM call, per job and tier; totals per project and user."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from reverie.llm import LLM, Completion, Embeddings, Structured, Usage
from reverie.llm.base import T
from reverie.store import ledger as table


@dataclass(frozen=True)
class Call:
    purpose: str
    usage: Usage


class Meter:
    """An LLM that remembers the usage of every call made through it, to be written to the ledger in the
    same transaction as the work it paid for (or with the failure, when the work is not committed)."""

    def __init__(self, llm: LLM):
        self.llm = llm
        self.calls: list[Call] = []

    @property
    def chat_model(self) -> str:
        return self.llm.chat_model

    @property
    def embedding_model(self) -> str:
        return self.llm.embedding_model

    @property
    def dimensions(self) -> int:
        return self.llm.dimensions

    def chat(self, messages: list[dict[str, str]], *, purpose: str = "reply", max_tokens: int | None = None
             ) -> Completion:
        completion = self.llm.chat(messages, purpose=purpose, max_tokens=max_tokens)
        self.calls.append(Call(purpose, completion.usage))
        return completion

    def structured(self, messages: list[dict[str, str]], schema: type[T], *, purpose: str) -> Structured[T]:
        result = self.llm.structured(messages, schema, purpose=purpose)
        self.calls.append(Call(purpose, result.usage))
        return result

    def embed(self, texts: list[str]) -> Embeddings:
        result = self.llm.embed(texts)
        self.calls.append(Call("embed", result.usage))
        return result

    def take(self) -> list[Call]:
        """The calls not yet written, and forget them (so a retry within a process never writes twice)."""
        calls, self.calls = self.calls, []
        return calls


def record(cur, project_id: str, user_id: str | None, tier: str | None, job_ids: Sequence[str],
           calls: Sequence[Call]) -> None:
    for call in calls:
        table.insert(cur, project_id, user_id, tier=tier, job_ids=job_ids, purpose=call.purpose,
                     model=call.usage.model, prompt_tokens=call.usage.prompt_tokens,
                     completion_tokens=call.usage.completion_tokens, calls=call.usage.calls)


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
    with db.transaction() as conn, conn.cursor() as cur:
        rows = table.sums(cur, project_id, user_id)
    totals = UsageTotals(project_id=project_id, user_id=user_id)
    for row in rows:
        totals.add(row)
        totals.by_model.setdefault(row["model"], UsageLine()).add(row)
        totals.by_purpose.setdefault(row["purpose"], UsageLine()).add(row)
        if row["tier"]:
            totals.by_tier.setdefault(row["tier"], UsageLine()).add(row)
    return totals


def job_usage(db, project_id: str, job_id: str) -> list[dict[str, Any]]:
    with db.transaction() as conn, conn.cursor() as cur:
        return table.for_job(cur, project_id, job_id)
