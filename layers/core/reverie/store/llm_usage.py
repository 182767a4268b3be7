"""The cost ledger (the llm_usage table): one row per model call, with the tier and the jobs it served."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from reverie.llm.base import Usage


def insert(
    cur, project_id: str, user_id: str | None, *, tier: str | None, job_ids: Sequence[str], purpose: str, model: str,
    prompt_tokens: int, completion_tokens: int, calls: int = 1,
) -> None:
    job_ids = list(job_ids)
    cur.execute(
        "INSERT INTO llm_usage (project_id, user_id, job_id, job_ids, tier, purpose, model, prompt_tokens,"
        " completion_tokens, calls) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        # job_id names the job when a call served exactly one; batched calls list theirs in job_ids.
        (project_id, user_id, job_ids[0] if len(job_ids) == 1 else None, job_ids, tier, purpose, model,
         prompt_tokens, completion_tokens, calls),
    )


class Call(Protocol):
    """A model call to record: what it was for and what it used (see reverie.llm.meter)."""

    purpose: str
    usage: Usage


def record(cur, project_id: str, user_id: str | None, tier: str | None, job_ids: Sequence[str],
           calls: Sequence[Call]) -> None:
    """Insert one row per call, in the caller's transaction (with the work it paid for)."""
    for call in calls:
        insert(cur, project_id, user_id, tier=tier, job_ids=job_ids, purpose=call.purpose, model=call.usage.model,
               prompt_tokens=call.usage.prompt_tokens, completion_tokens=call.usage.completion_tokens,
               calls=call.usage.calls)


def sums(cur, project_id: str, user_id: str | None = None) -> list[dict[str, Any]]:
    """Sums per (model, purpose, tier) for a project, or for one user of it."""
    clauses, params = ["project_id = %s"], [project_id]
    if user_id is not None:
        clauses.append("user_id = %s")
        params.append(user_id)
    cur.execute(
        "SELECT model, purpose, coalesce(tier, '') AS tier, sum(calls)::bigint AS calls,"
        " sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens"
        f" FROM llm_usage WHERE {' AND '.join(clauses)} GROUP BY model, purpose, coalesce(tier, '')",
        params,
    )
    columns = [c[0] for c in cur.description]
    return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def for_job(cur, project_id: str, job_id: str) -> list[dict[str, Any]]:
    """The calls that served one job (a batched call served several: `shared_by` says how many)."""
    cur.execute(
        "SELECT tier, purpose, model, prompt_tokens, completion_tokens, calls,"
        " greatest(cardinality(job_ids), 1) AS shared_by, created_at FROM llm_usage"
        " WHERE project_id = %s AND (job_id = %s OR job_ids @> ARRAY[%s]::text[]) ORDER BY id",
        (project_id, job_id, job_id),
    )
    columns = [c[0] for c in cur.description]
    return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
