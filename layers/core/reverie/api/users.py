"""The memory API's operations on users: the narrative (read, or queued on a miss; regenerated on request),
the export of everything stored, and forget."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import redis
from botocore.exceptions import BotoCoreError, ClientError

from reverie import forget
from reverie.api.resolver import Reply
from reverie.api.schemas import (
    ExportedHeldJob,
    ExportedJob,
    ExportedNarrative,
    ExportedSession,
    ExportedUsage,
    JobAccepted,
    NarrativeAnswer,
    NarrativePending,
    UserExport,
    check_user_id,
)
from reverie.cache import narratives as narrative_guard
from reverie.cache import working_memory
from reverie.domain.errors import ServiceUnavailable, ValidationFailed
from reverie.domain.fields import as_utc, utcnow
from reverie.jobs import narratives as narrative_jobs
from reverie.store import narratives, user_data

# A Lambda answer is at most 6 MB: an export page stops at about this size, with room for the JSON around it.
EXPORT_PAGE_BYTES = 4 * 1024 * 1024
EXPORT_BATCH_ROWS = 500
# What the rows of each part are answered as (memories and events are read as their models already).
EXPORTED = {"narratives": ExportedNarrative, "jobs": ExportedJob, "usage": ExportedUsage,
            "held_jobs": ExportedHeldJob}


def get_narrative(clients, project_id: str, user_id: str) -> Reply:
    """200 with the newest version; on a miss, 202 at once and a queued job (never generated in process)."""
    check_user_id(user_id)
    latest = narratives.latest(clients.db, project_id, user_id)
    if latest is not None:
        return Reply(200, NarrativeAnswer(
            narrative=latest["text"], version=latest["version"], generated_at=latest["generated_at"],
            citations=[str(c) for c in latest["citations"] or []],
        ))
    try:
        first = narrative_guard.claim_generation(clients.valkey, project_id, user_id, time.time())
    except redis.RedisError:
        first = True  # without the guard a second job may be queued; the worker writes versions in order
    if not first:
        return Reply(202, NarrativePending())
    try:
        job = narrative_jobs.enqueue(clients, project_id, user_id, "missing")
    except (BotoCoreError, ClientError) as exc:
        with contextlib.suppress(redis.RedisError):  # else the guard expires on its own
            narrative_guard.release_generation(clients.valkey, project_id, user_id)
        raise ServiceUnavailable("could not queue the narrative job; try again") from exc
    return Reply(202, NarrativePending(job_id=job.job_id))


def regenerate_narrative(clients, project_id: str, user_id: str) -> JobAccepted:
    check_user_id(user_id)
    try:
        job = narrative_jobs.enqueue(clients, project_id, user_id, "requested")
    except (BotoCoreError, ClientError) as exc:
        raise ServiceUnavailable("could not queue the narrative job; try again") from exc
    return JobAccepted(job_id=job.job_id)


def export_user(clients, project_id: str, user_id: str, cursor: str | None = None,
                page_bytes: int = EXPORT_PAGE_BYTES) -> UserExport:
    """Everything stored for the user, a page of about `page_bytes` at a time: every memory (superseded too),
    events, narratives, job outcomes, the cost ledger, the jobs held in reflection windows and the turns still
    in working memory, in that order; `next_cursor` continues it."""
    check_user_id(user_id)
    part, after = _read_cursor(cursor)
    page = UserExport(user_id=user_id, exported_at=utcnow())
    used = 0
    parts = [*user_data.EXPORT_PARTS, "working_memory"]
    for name in parts[parts.index(part):]:
        for item, key in _part_rows(clients, project_id, user_id, name, after):
            size = len(item.model_dump_json())
            if used and used + size > page_bytes:
                page.next_cursor = _cursor(name, after)
                return page
            getattr(page, name).append(item)
            used += size
            after = key
        after = None
    return page


def _part_rows(clients, project_id: str, user_id: str, part: str, after: list[Any] | None) -> Iterator[tuple]:
    """(item, its ordering key) of one part of the export, from after `after`, in order."""
    if part == "working_memory":
        sessions = working_memory.sessions(clients.valkey, project_id, user_id)
        for session_id in sorted(sessions):
            if after is None or session_id > after[0]:
                yield ExportedSession(session_id=session_id, turns=sessions[session_id]), [session_id]
        return
    model = EXPORTED.get(part)
    while True:
        rows = user_data.export_rows(clients.db, project_id, user_id, part, after=after, limit=EXPORT_BATCH_ROWS)
        yield from ((model.model_validate(row) if model else row, key) for row, key in rows)
        if len(rows) < EXPORT_BATCH_ROWS:
            return
        after = rows[-1][1]


_INT_BOUNDS = {"bigint": 2**63, "int": 2**31}


def _check_key(part: str, after: Any) -> list[Any]:
    """A cursor's key as values Postgres takes for the part's ordering columns (else it is not ours): numbers in
    the column's range, text without NUL or lone surrogates, times in UTC (Postgres refuses offsets past 15:59)
    and UUIDs in their canonical form (Python reads forms Postgres refuses, such as urn:uuid:...)."""
    types = ["text"] if part == "working_memory" else [t for _, t in user_data.EXPORT_PARTS[part][1]]
    if not isinstance(after, list) or len(after) != len(types):
        raise ValueError("key")
    checked: list[Any] = []
    for value, kind in zip(after, types, strict=True):
        if kind in _INT_BOUNDS:
            bound = _INT_BOUNDS[kind]
            if not isinstance(value, int) or isinstance(value, bool) or not -bound <= value < bound:
                raise ValueError(kind)
            checked.append(value)
            continue
        if not isinstance(value, str) or not value or "\x00" in value:
            raise ValueError(kind)
        value.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
        if kind == "timestamptz":
            checked.append(as_utc(datetime.fromisoformat(value)).isoformat())
        elif kind == "uuid":
            checked.append(str(uuid.UUID(value)))
        else:
            checked.append(value)
    return checked


def _cursor(part: str, after: list[Any] | None) -> str:
    return base64.urlsafe_b64encode(json.dumps([part, after]).encode()).decode().rstrip("=")


def _read_cursor(cursor: str | None) -> tuple[str, list[Any] | None]:
    if not cursor:
        return "memories", None
    try:
        part, after = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if part not in user_data.EXPORT_PARTS and part != "working_memory":
            raise ValueError(part)
        return part, None if after is None else _check_key(part, after)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("cursor is not one this API returned") from exc


def forget_user(clients, project_id: str, user_id: str) -> JobAccepted:
    """Forget a user everywhere (see reverie.forget); the job id names the forget's receipt."""
    check_user_id(user_id)
    return JobAccepted(job_id=forget.forget_user(clients, project_id, user_id))
