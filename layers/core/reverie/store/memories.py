"""The memories table (tiers 2-4) and its events (memory_events): writes compose into a caller's transaction;
reads scope by project and user. Ranked lookups (search, reconciliation candidates) are in memory_search."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import psycopg2.errors
from psycopg2.extras import Json

from reverie.domain.errors import Conflict, NotFound, ValidationFailed
from reverie.domain.fields import as_utc
from reverie.domain.memory import Memory, MemoryEvent
from reverie.domain.tiers import EventKind, Tier
from reverie.store.db import Database, vector_literal
from reverie.store.tombstones import lock_user_tier

COLUMNS = (
    "id, user_id, tier, text, metadata, importance, valid_from, valid_to, recorded_at AS created_at, "
    "updated_at, superseded_at, superseded_by, source_job_id, session_id, embedding_model"
)


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


M = TypeVar("M", bound=Memory)


def as_memory(row: dict[str, Any], model: type[M] = Memory, **fields: Any) -> M:
    """A row read with COLUMNS as `model`: a Memory, or a kind of Memory given its own `fields` (a score), validated
    once (a Memory validated and then copied into a ScoredMemory costs three times as much, on every turn's rules
    and search results)."""
    row = {**row, **fields}
    for key in ("id", "superseded_by"):
        if row.get(key) is not None:
            row[key] = str(row[key])
    return model.model_validate(row)


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
    """Refine a memory in place (same fact, better words); the old text stays in its UPDATE event (until the
    memory is deleted)."""
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


def refine(cur, project_id: str, user_id: str, memory_id: str, text: str, *,
           embedding: list[float] | None, embedding_model: str | None, job_id: str | None) -> bool:
    """`update_text` in a savepoint: refining into a text another current memory already holds is False, and
    leaves the caller's transaction usable."""
    cur.execute("SAVEPOINT refine")
    try:
        ok = update_text(cur, project_id, user_id, memory_id, text, embedding=embedding,
                         embedding_model=embedding_model, job_id=job_id)
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT refine")
        return False
    cur.execute("RELEASE SAVEPOINT refine")
    return ok


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
    with db.read(project_id) as cur:
        cur.execute(f"SELECT {COLUMNS} FROM memories WHERE project_id = %s AND id = %s", (project_id, memory_id))
        row = cur.fetchone()
        return as_memory(row) if row else None


def delete(db: Database, project_id: str, memory_id: str) -> bool:
    """An explicit delete: the row goes and so does its text, everywhere it was kept. Its events stay, without
    their text (the DELETE event, the last, has none), so the history still says what happened and when, and
    nothing of what was said. The narratives written from it go too: they quote it (the next one is written
    without it)."""
    if not _is_uuid(memory_id):
        return False
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute(
            "DELETE FROM memories WHERE project_id = %s AND id = %s RETURNING user_id",
            (project_id, memory_id),
        )
        row = cur.fetchone()
        if row is None:
            return False
        user_id = row[0]
        cur.execute("UPDATE memories SET superseded_by = NULL WHERE project_id = %s AND superseded_by = %s",
                    (project_id, memory_id))
        # An event holds only its own memory's text (ADD, UPDATE and SUPERSEDE: old and new; DELETE: none now).
        cur.execute(
            "UPDATE memory_events SET old_text = NULL, new_text = NULL WHERE project_id = %s AND memory_id = %s"
            " AND (old_text IS NOT NULL OR new_text IS NOT NULL)",
            (project_id, memory_id),
        )
        cur.execute("DELETE FROM narratives WHERE project_id = %s AND user_id = %s AND %s = ANY(citations)",
                    (project_id, user_id, memory_id))
        record_event(cur, project_id, user_id, memory_id, EventKind.DELETE)
        return True


SUPERSEDED_EDIT = "this memory was superseded: what was true then stays as it was; edit the current one"


def edit(db: Database, project_id: str, memory_id: str, text: str, *, embedding: list[float] | None,
         embedding_model: str | None) -> bool:
    """A person's correction of a current memory: new words and their embedding, in place. The memory keeps its
    id, and with it its place among the facts that superseded one another and its history; its UPDATE event keeps
    the old words (until the memory is deleted). Done under the lock of the user's tier, which reflection and forget
    take too. False when the text is already the memory's. NotFound when there is no such memory; Conflict when it
    was superseded (what was true then is history, not rewritten) or another current memory of the user's tier
    already says this."""
    if not _is_uuid(memory_id):
        raise NotFound("no memory with this id")
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute("SELECT user_id, tier FROM memories WHERE project_id = %s AND id = %s", (project_id, memory_id))
        row = cur.fetchone()
        if row is None:
            raise NotFound("no memory with this id")
        user_id, tier = row
        lock_user_tier(cur, project_id, user_id, Tier(tier))
        cur.execute("SELECT text, superseded_at FROM memories WHERE project_id = %s AND id = %s FOR UPDATE",
                    (project_id, memory_id))
        row = cur.fetchone()
        if row is None:
            raise NotFound("no memory with this id")
        if row[1] is not None:
            raise Conflict(SUPERSEDED_EDIT)
        if row[0] == text:
            return False
        try:
            return update_text(cur, project_id, user_id, memory_id, text, embedding=embedding,
                               embedding_model=embedding_model, job_id=None)
        except psycopg2.errors.UniqueViolation:
            raise Conflict(f"another current {tier} memory of this user already says this") from None


def history(db: Database, project_id: str, memory_id: str) -> list[MemoryEvent]:
    if not _is_uuid(memory_id):
        return []
    with db.read(project_id) as cur:
        cur.execute(
            "SELECT id, memory_id::text AS memory_id, event, job_id, old_text, new_text, created_at"
            " FROM memory_events WHERE project_id = %s AND memory_id = %s ORDER BY id",
            (project_id, memory_id),
        )
        return [MemoryEvent.model_validate(r) for r in cur.fetchall()]


def list_page(
    db: Database, project_id: str, user_id: str, *, tier: Tier | None = None, limit: int = 50,
    cursor: str | None = None, include_superseded: bool = False, model: type[M] = Memory,
) -> tuple[list[M], str | None]:
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
    with db.read(project_id) as cur:
        cur.execute(
            f"SELECT {COLUMNS} FROM memories WHERE {' AND '.join(clauses)}"
            " ORDER BY recorded_at DESC, id DESC LIMIT %s",
            params,
        )
        rows = cur.fetchall()
    page = [as_memory(r, model) for r in rows[:limit]]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, next_cursor


# The user's `limit` newest current memories of one tier, as list_page orders them.
CURRENT_OF_TIER = (
    f"SELECT {COLUMNS} FROM memories WHERE project_id = %(project)s AND user_id = %(user)s"
    " AND superseded_at IS NULL AND tier = %(tier)s ORDER BY recorded_at DESC, id DESC LIMIT %(limit)s"
)


def current_by_tier(db: Database, project_id: str, user_id: str, tier: Tier, limit: int,
                    model: type[M] = Memory) -> list[M]:
    with db.read(project_id) as cur:
        cur.execute(CURRENT_OF_TIER, {"project": project_id, "user": user_id, "tier": Tier(tier).value,
                                      "limit": limit})
        return [as_memory(r, model) for r in cur.fetchall()]


def has_current(db: Database, project_id: str, user_id: str) -> bool:
    """Whether the user has any current memory (of any tier)."""
    with db.read(project_id) as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM memories WHERE project_id = %s AND user_id = %s"
                    " AND superseded_at IS NULL) AS found", (project_id, user_id))
        return bool(cur.fetchone()["found"])


def get_many(db: Database, project_id: str, memory_ids: list[str]) -> list[Memory]:
    """Memories by id, in the order asked, scoped by project."""
    if not memory_ids:
        return []
    with db.read(project_id) as cur:
        cur.execute(f"SELECT {COLUMNS} FROM memories WHERE project_id = %s AND id = ANY(%s::uuid[])",
                    (project_id, memory_ids))
        found = {str(r["id"]): as_memory(r) for r in cur.fetchall()}
    return [found[i] for i in memory_ids if i in found]


def superseded(db: Database, project_id: str, user_id: str, *, limit: int) -> list[Memory]:
    """Facts that were replaced, newest replacement first: what the user's life used to be."""
    with db.read(project_id) as cur:
        cur.execute(
            f"SELECT {COLUMNS} FROM memories WHERE project_id = %s AND user_id = %s AND superseded_at IS NOT NULL"
            " ORDER BY superseded_at DESC LIMIT %s",
            (project_id, user_id, limit),
        )
        return [as_memory(r) for r in cur.fetchall()]


def current_id_by_text(cur, project_id: str, user_id: str, tier: Tier, text: str) -> str | None:
    """The current memory with this normalised text, if any (the unique index allows one)."""
    cur.execute(
        "SELECT id::text FROM memories WHERE project_id = %s AND user_id = %s AND tier = %s AND content_hash = %s"
        " AND superseded_at IS NULL",
        (project_id, user_id, Tier(tier).value, content_hash(text)),
    )
    row = cur.fetchone()
    return row[0] if row else None


def current_hashes(cur, project_id: str, user_id: str, tier: Tier, texts: Sequence[str]) -> set[str]:
    """Which of these texts are already stored as current memories (by normalised-text hash)."""
    if not texts:
        return set()
    cur.execute(
        "SELECT content_hash FROM memories WHERE project_id = %s AND user_id = %s AND tier = %s"
        " AND superseded_at IS NULL AND content_hash = ANY(%s)",
        (project_id, user_id, Tier(tier).value, [content_hash(t) for t in texts]),
    )
    return {row[0] for row in cur.fetchall()}


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
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, memory_id = json.loads(raw)
        return as_utc(datetime.fromisoformat(at)), str(uuid.UUID(memory_id))  # Postgres takes offsets < 16 h
    except Exception as exc:
        raise ValidationFailed("cursor is not one this API returned") from exc


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except (ValueError, AttributeError, TypeError):
        return False
