"""The memories table (tiers 2-4) and its events: writes compose into a caller's transaction; reads scope
by project and user."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2.extras import Json

from reverie.models import EventKind, Memory, MemoryEvent, Tier
from reverie.store.db import Database, vector_literal

_COLUMNS = (
    "id, user_id, tier, text, metadata, importance, valid_from, valid_to, recorded_at AS created_at, "
    "updated_at, superseded_at, superseded_by, source_job_id, session_id, embedding_model"
)
# Reciprocal rank fusion constant: the usual 60 keeps one list's top hit from drowning the other list.
RRF_K = 60


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


def content_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:32]


@dataclass
class NewMemory:
    tier: Tier
    text: str
    embedding: list[float] | None = None
    embedding_model: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    importance: float | None = None
    session_id: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    source_turn_ids: list[str] = field(default_factory=list)
    source_job_id: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


def _memory(row: dict[str, Any]) -> Memory:
    row = dict(row)
    for key in ("id", "superseded_by"):
        if row.get(key) is not None:
            row[key] = str(row[key])
    return Memory.model_validate(row)


# ---------------------------------------------------------------- writes (inside a caller's transaction)


def insert(cur, project_id: str, user_id: str, memory: NewMemory, *, job_id: str | None = None) -> str | None:
    """Insert a current memory and its ADD event. Returns None when an equal current memory exists."""
    cur.execute(
        "INSERT INTO memories (id, project_id, user_id, tier, text, content_hash, embedding, embedding_model,"
        " metadata, importance, session_id, valid_from, valid_to, source_turn_ids, source_job_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s::vector, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (project_id, user_id, tier, content_hash) WHERE superseded_at IS NULL DO NOTHING"
        " RETURNING id",
        (
            memory.id, project_id, user_id, Tier(memory.tier).value, memory.text, content_hash(memory.text),
            vector_literal(memory.embedding) if memory.embedding is not None else None,
            memory.embedding_model, Json(memory.metadata), memory.importance, memory.session_id,
            memory.valid_from, memory.valid_to, list(memory.source_turn_ids), memory.source_job_id,
        ),
    )
    row = cur.fetchone()
    if row is None:
        return None
    record_event(cur, project_id, user_id, memory.id, EventKind.ADD, job_id=job_id, new_text=memory.text)
    return memory.id


def update_text(
    cur, project_id: str, user_id: str, memory_id: str, text: str, *,
    embedding: list[float] | None, embedding_model: str | None, job_id: str | None,
) -> bool:
    """Refine a memory in place (same fact, better words); the old text stays in its UPDATE event."""
    cur.execute(
        "UPDATE memories m SET text = %s, content_hash = %s, embedding = %s::vector, embedding_model = %s,"
        " updated_at = now() FROM memories old"
        " WHERE m.id = old.id AND m.project_id = %s AND m.user_id = %s AND m.id = %s"
        " AND m.superseded_at IS NULL RETURNING old.text",
        (
            text, content_hash(text), vector_literal(embedding) if embedding is not None else None,
            embedding_model, project_id, user_id, memory_id,
        ),
    )
    row = cur.fetchone()
    if row is None:
        return False
    record_event(cur, project_id, user_id, memory_id, EventKind.UPDATE, job_id=job_id, old_text=row[0],
                 new_text=text)
    return True


def supersede(
    cur, project_id: str, user_id: str, old_id: str, new_id: str, *, job_id: str | None,
    at: datetime | None = None,
) -> bool:
    """Close an old fact without destroying it: it stays readable with `as_of` and in history."""
    cur.execute(
        "UPDATE memories SET superseded_at = coalesce(%s, now()), superseded_by = %s,"
        " valid_to = coalesce(valid_to, %s, now()), updated_at = now()"
        " WHERE project_id = %s AND user_id = %s AND id = %s AND superseded_at IS NULL RETURNING text",
        (at, new_id, at, project_id, user_id, old_id),
    )
    row = cur.fetchone()
    if row is None:
        return False
    record_event(cur, project_id, user_id, old_id, EventKind.SUPERSEDE, job_id=job_id, old_text=row[0])
    return True


def record_event(
    cur, project_id: str, user_id: str, memory_id: str, event: EventKind, *, job_id: str | None = None,
    old_text: str | None = None, new_text: str | None = None,
) -> None:
    cur.execute(
        "INSERT INTO memory_events (project_id, user_id, memory_id, event, job_id, old_text, new_text)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (project_id, user_id, memory_id, EventKind(event).value, job_id, old_text, new_text),
    )


# ---------------------------------------------------------------- reads and single-statement writes


def get(db: Database, project_id: str, memory_id: str) -> Memory | None:
    if not _is_uuid(memory_id):
        return None
    with db.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM memories WHERE project_id = %s AND id = %s", (project_id, memory_id))
        row = cur.fetchone()
        return _memory(row) if row else None


def delete(db: Database, project_id: str, memory_id: str) -> bool:
    """An explicit delete: the row goes, a DELETE event keeps the trace."""
    if not _is_uuid(memory_id):
        return False
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "DELETE FROM memories WHERE project_id = %s AND id = %s RETURNING user_id, text",
            (project_id, memory_id),
        )
        row = cur.fetchone()
        if row is None:
            return False
        cur.execute("UPDATE memories SET superseded_by = NULL WHERE superseded_by = %s", (memory_id,))
        record_event(cur, project_id, row[0], memory_id, EventKind.DELETE, old_text=row[1])
        return True


def history(db: Database, project_id: str, memory_id: str) -> list[MemoryEvent]:
    if not _is_uuid(memory_id):
        return []
    with db.cursor() as cur:
        cur.execute(
            "SELECT id, memory_id::text AS memory_id, event, job_id, old_text, new_text, created_at"
            " FROM memory_events WHERE project_id = %s AND memory_id = %s ORDER BY id",
            (project_id, memory_id),
        )
        return [MemoryEvent.model_validate(r) for r in cur.fetchall()]


def list_page(
    db: Database, project_id: str, user_id: str, *, tier: Tier | None = None, limit: int = 50,
    cursor: str | None = None, include_superseded: bool = False,
) -> tuple[list[Memory], str | None]:
    """Newest first, keyset-paginated: the cursor is the (recorded_at, id) of the last row returned."""
    clauses = ["project_id = %s", "user_id = %s"]
    params: list[Any] = [project_id, user_id]
    if not include_superseded:
        clauses.append("superseded_at IS NULL")
    if tier is not None:
        clauses.append("tier = %s")
        params.append(Tier(tier).value)
    if cursor:
        at, last_id = decode_cursor(cursor)
        clauses.append("(recorded_at, id) < (%s, %s)")
        params += [at, last_id]
    params.append(limit + 1)
    with db.read() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM memories WHERE {' AND '.join(clauses)}"
            " ORDER BY recorded_at DESC, id DESC LIMIT %s",
            params,
        )
        rows = cur.fetchall()
    page = [_memory(r) for r in rows[:limit]]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, next_cursor


def current_by_tier(db: Database, project_id: str, user_id: str, tier: Tier, limit: int) -> list[Memory]:
    page, _ = list_page(db, project_id, user_id, tier=tier, limit=limit)
    return page


@dataclass(frozen=True)
class Ranked:
    """One hit of a ranked lookup: what fusion needs (the id, and the recorded_at its tie-break prefers), and
    for a vector hit its distance (to merge scans of several tiers)."""

    id: str
    recorded_at: datetime
    distance: float | None = None


def nearest(
    db: Database, project_id: str, user_id: str, embedding: list[float], *, k: int,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
) -> list[Ranked]:
    """The user's `k` memories nearest to `embedding` by cosine distance, best first.

    Exact distances over the user's own rows (no global vector index: filtered to one user it keeps almost none
    of that user's rows), on the half-precision copies in the covering index of migration 0004."""
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    params.update(qvec=vector_literal(embedding), k=k)
    with db.read(cursor_factory=None) as cur:
        cur.execute(
            f"SELECT id::text, recorded_at, embedding_half <=> %(qvec)s::halfvec AS d FROM memories"
            f" WHERE {where} AND embedding_half IS NOT NULL ORDER BY d LIMIT %(k)s",
            params,
        )
        return [Ranked(row[0], row[1], row[2]) for row in cur.fetchall()]


def matching(
    db: Database, project_id: str, user_id: str, query: str, *, k: int,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
) -> list[Ranked]:
    """The user's `k` memories that best match any word of `query` (full text, ts_rank_cd), best first."""
    terms = or_tsquery(query)
    if not terms:
        return []
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    params.update(terms=terms, k=k)
    with db.read(cursor_factory=None) as cur:
        cur.execute(
            f"SELECT id::text, recorded_at, ts_rank_cd(tsv, q) AS r FROM memories, to_tsquery('english', %(terms)s) q"
            f" WHERE {where} AND tsv @@ q ORDER BY r DESC LIMIT %(k)s",
            params,
        )
        return [Ranked(row[0], row[1]) for row in cur.fetchall()]


def fetch(db: Database, project_id: str, user_id: str, ids: Sequence[str]) -> list[Memory]:
    """The user's memories with these ids, in the order given; an id whose row is gone is skipped."""
    if not ids:
        return []
    with db.read() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM memories WHERE project_id = %s AND user_id = %s AND id = ANY(%s::uuid[])",
            (project_id, user_id, list(ids)),
        )
        rows = {str(row["id"]): row for row in cur.fetchall()}
    return [_memory(rows[i]) for i in ids if i in rows]


def _scope(
    project_id: str, user_id: str, tiers: Sequence[Tier] | None, filters: dict[str, Any] | None,
    as_of: datetime | None,
) -> tuple[str, dict[str, Any]]:
    """The rows a search may return: the user's, of these tiers, current (or current at `as_of`), matching
    `filters` (metadata containment)."""
    clauses = ["project_id = %(project)s", "user_id = %(user)s", "tier = ANY(%(tiers)s)"]
    params: dict[str, Any] = {
        "project": project_id, "user": user_id, "tiers": [Tier(t).value for t in (tiers or list(Tier))],
    }
    if as_of is None:
        clauses.append("superseded_at IS NULL")
    else:
        clauses.append("recorded_at <= %(as_of)s AND (superseded_at IS NULL OR superseded_at > %(as_of)s)")
        params["as_of"] = as_of
    if filters:
        clauses.append("metadata @> %(filters)s")
        params["filters"] = Json(filters)
    return " AND ".join(clauses), params


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


# ---------------------------------------------------------------- helpers


def or_tsquery(text: str, max_terms: int = 32) -> str:
    """Any-word full-text query: a chat message rarely contains every word of a stored fact."""
    words = []
    for word in re.findall(r"\w+", text.lower()):
        if word not in words and len(word) > 1:
            words.append(word)
    return " | ".join(words[:max_terms])


def encode_cursor(at: datetime, memory_id: str) -> str:
    raw = json.dumps([at.isoformat(), memory_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    from reverie.errors import ValidationFailed

    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, memory_id = json.loads(raw)
        return datetime.fromisoformat(at), str(uuid.UUID(memory_id))
    except Exception as exc:
        raise ValidationFailed("cursor is not one this API returned") from exc


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except (ValueError, AttributeError, TypeError):
        return False


