"""Everything durable of one user across the tables: read a page at a time for an export, deleted for a forget."""

from __future__ import annotations

from typing import Any

from reverie.domain.memory import MemoryEvent
from reverie.store.db import Database
from reverie.store.memories import COLUMNS, as_memory

# The parts of an export, in the order it walks them: the columns read, and the columns (with their SQL types)
# that order the part, so a page can start after the last row of the one before.
EXPORT_PARTS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "memories": (f"SELECT {COLUMNS}, recorded_at AS _at FROM memories", [("recorded_at", "timestamptz"),
                                                                           ("id", "uuid")]),
    "events": ("SELECT id, memory_id::text AS memory_id, event, job_id, old_text, new_text, created_at"
               " FROM memory_events", [("id", "bigint")]),
    "narratives": ("SELECT version, text, citations, model, generated_at FROM narratives", [("version", "int")]),
    "jobs": ("SELECT job_id, tier, status, added, updated, superseded, reason, error, processed_at FROM processed_jobs",
             [("processed_at", "timestamptz"), ("job_id", "text"), ("tier", "text")]),
    "usage": ("SELECT id, job_id, job_ids, tier, purpose, model, prompt_tokens, completion_tokens, calls, created_at"
              " FROM llm_usage", [("id", "bigint")]),
    "held_jobs": ("SELECT seq, tier, held_at, attempts, last_error, job FROM held_jobs", [("seq", "bigint")]),
}


def export_rows(db: Database, project_id: str, user_id: str, part: str, *, after: list[Any] | None,
                limit: int) -> list[tuple[Any, list[Any]]]:
    """Up to `limit` rows of one part of the user's export, in order, after the row whose ordering key is
    `after`: (the row, as a Memory, a MemoryEvent or a dict; its ordering key as JSON-ready values)."""
    select, order = EXPORT_PARTS[part]
    columns = ", ".join(c for c, _ in order)
    clauses, params = ["project_id = %s", "user_id = %s"], [project_id, user_id]
    if after is not None:
        clauses.append(f"({columns}) > ({', '.join(f'%s::{t}' for _, t in order)})")
        params += after
    with db.read(project_id) as cur:
        cur.execute(f"{select} WHERE {' AND '.join(clauses)} ORDER BY {columns} LIMIT %s", [*params, limit])
        rows = cur.fetchall()
    found = []
    for row in rows:
        row = dict(row)
        recorded_at = row.pop("_at", None)  # memories show it as created_at; their order needs it by name
        key = [_json_ready(recorded_at if c == "recorded_at" else row[c]) for c, _ in order]
        if part == "memories":
            found.append((as_memory(row), key))
        elif part == "events":
            found.append((MemoryEvent.model_validate(row), key))
        else:
            found.append((row, key))
    return found


def _json_ready(value: Any) -> Any:
    """A key value as the cursor carries it: numbers as they are, times and ids as text (cast back in SQL)."""
    if isinstance(value, int):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def forget_user(cur, project_id: str, user_id: str) -> dict[str, int]:
    """Remove everything durable of one user, and leave a tombstone so late jobs are dropped."""
    counts = {}
    # The words index of the user's memories in one statement (their trigger would remove them one memory at a time).
    cur.execute("DELETE FROM memory_words WHERE project_id = %s AND user_id = %s", (project_id, user_id))
    for table in ("memories", "memory_events", "narratives", "llm_usage", "processed_jobs", "held_jobs"):
        cur.execute(f"DELETE FROM {table} WHERE project_id = %s AND user_id = %s", (project_id, user_id))
        counts[table] = cur.rowcount
    cur.execute(
        "INSERT INTO user_tombstones (project_id, user_id) VALUES (%s, %s)"
        " ON CONFLICT (project_id, user_id) DO UPDATE SET forgotten_at = now()",
        (project_id, user_id),
    )
    return counts
