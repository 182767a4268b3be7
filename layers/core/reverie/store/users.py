"""Per-user reads across tables (export, last writes) and the cost ledger rows of API calls; scoped by project."""

from __future__ import annotations

from typing import Any

from reverie.models import Memory, MemoryEvent, Tier
from reverie.store.db import Database
from reverie.store.memories import _COLUMNS, _memory, content_hash

# An export is one response: past this many rows per table it says it was cut, rather than fail to send.
EXPORT_MAX_ROWS = 5000


def find_current(cur, project_id: str, user_id: str, tier: Tier, text: str) -> str | None:
    """The id of the current memory with this text's normalised hash (the one an insert deduplicated to)."""
    cur.execute(
        "SELECT id FROM memories WHERE project_id = %s AND user_id = %s AND tier = %s AND content_hash = %s"
        " AND superseded_at IS NULL",
        (project_id, user_id, Tier(tier).value, content_hash(text)),
    )
    row = cur.fetchone()
    return str(row[0]) if row else None


def get_many(db: Database, project_id: str, memory_ids: list[str]) -> list[Memory]:
    """Memories by id, in the order asked, scoped by project."""
    if not memory_ids:
        return []
    with db.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM memories WHERE project_id = %s AND id = ANY(%s::uuid[])",
                    (project_id, memory_ids))
        found = {str(r["id"]): _memory(r) for r in cur.fetchall()}
    return [found[i] for i in memory_ids if i in found]


def superseded(db: Database, project_id: str, user_id: str, *, limit: int) -> list[Memory]:
    """Facts that were replaced, newest replacement first: what the user's life used to be."""
    with db.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM memories WHERE project_id = %s AND user_id = %s AND superseded_at IS NOT NULL"
            " ORDER BY superseded_at DESC LIMIT %s",
            (project_id, user_id, limit),
        )
        return [_memory(r) for r in cur.fetchall()]


def export(db: Database, project_id: str, user_id: str, *, max_rows: int = EXPORT_MAX_ROWS) -> dict[str, Any]:
    """Every durable row of one user: memories (superseded too), their events, narratives, job outcomes, the
    cost ledger and the jobs held in reflection windows. `truncated` names the tables that had more than
    `max_rows` rows."""
    out: dict[str, Any] = {"truncated": []}
    queries = {
        "memories": f"SELECT {_COLUMNS} FROM memories WHERE project_id = %s AND user_id = %s"
                    " ORDER BY recorded_at, id LIMIT %s",
        "events": "SELECT id, memory_id::text AS memory_id, event, job_id, old_text, new_text, created_at"
                  " FROM memory_events WHERE project_id = %s AND user_id = %s ORDER BY id LIMIT %s",
        "narratives": "SELECT version, text, citations, model, generated_at FROM narratives"
                      " WHERE project_id = %s AND user_id = %s ORDER BY version LIMIT %s",
        "jobs": "SELECT job_id, tier, status, added, updated, superseded, reason, error, processed_at"
                " FROM processed_jobs WHERE project_id = %s AND user_id = %s ORDER BY processed_at, job_id, tier"
                " LIMIT %s",
        "usage": "SELECT job_id, job_ids, tier, purpose, model, prompt_tokens, completion_tokens, calls, created_at"
                 " FROM llm_usage"
                 " WHERE project_id = %s AND user_id = %s ORDER BY id LIMIT %s",
        "held_jobs": "SELECT tier, held_at, attempts, last_error, job FROM held_jobs"
                     " WHERE project_id = %s AND user_id = %s ORDER BY seq LIMIT %s",
    }
    with db.cursor() as cur:
        for name, sql in queries.items():
            cur.execute(sql, (project_id, user_id, max_rows + 1))
            rows = cur.fetchall()
            if len(rows) > max_rows:
                out["truncated"].append(name)
                rows = rows[:max_rows]
            if name == "memories":
                out[name] = [_memory(r) for r in rows]
            elif name == "events":
                out[name] = [MemoryEvent.model_validate(r) for r in rows]
            else:
                out[name] = [dict(r) for r in rows]
    return out


def last_writes(db: Database, project_id: str) -> dict[str, Any]:
    """Per tier, when the project's last job outcome was recorded and what it was."""
    with db.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT ON (tier) tier, processed_at, status FROM processed_jobs WHERE project_id = %s"
            " ORDER BY tier, processed_at DESC",
            (project_id,),
        )
        rows = {r["tier"]: r for r in cur.fetchall()}
    return {
        t.value: ({"at": rows[t.value]["processed_at"], "status": rows[t.value]["status"]} if t.value in rows else None)
        for t in Tier
    }
