"""Everything durable of one user across the tables: read for an export, deleted for a forget."""

from __future__ import annotations

from typing import Any

from reverie.domain.memory import MemoryEvent
from reverie.store.db import Database
from reverie.store.memories import COLUMNS, as_memory

# An export is one response: past this many rows per table it says it was cut, rather than fail to send.
EXPORT_MAX_ROWS = 5000


def export(db: Database, project_id: str, user_id: str, *, max_rows: int = EXPORT_MAX_ROWS) -> dict[str, Any]:
    """Every durable row of one user: memories (superseded too), their events, narratives, job outcomes, the
    cost ledger and the jobs held in reflection windows. `truncated` names the tables that had more than
    `max_rows` rows."""
    out: dict[str, Any] = {"truncated": []}
    queries = {
        "memories": f"SELECT {COLUMNS} FROM memories WHERE project_id = %s AND user_id = %s"
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
                out[name] = [as_memory(r) for r in rows]
            elif name == "events":
                out[name] = [MemoryEvent.model_validate(r) for r in rows]
            else:
                out[name] = [dict(r) for r in rows]
    return out


def forget_user(cur, project_id: str, user_id: str) -> dict[str, int]:
    """Remove everything durable of one user, and leave a tombstone so late jobs are dropped."""
    counts = {}
    for table in ("memories", "memory_events", "narratives", "llm_usage", "processed_jobs", "held_jobs"):
        cur.execute(f"DELETE FROM {table} WHERE project_id = %s AND user_id = %s", (project_id, user_id))
        counts[table] = cur.rowcount
    cur.execute(
        "INSERT INTO user_tombstones (project_id, user_id) VALUES (%s, %s)"
        " ON CONFLICT (project_id, user_id) DO UPDATE SET forgotten_at = now()",
        (project_id, user_id),
    )
    return counts
