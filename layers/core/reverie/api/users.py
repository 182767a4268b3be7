"""The memory API's operations on users: the narrative (read from its hot copy, or queued on a miss; regenerated
on request), the export of everything stored, and forget."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from reverie import forget
from reverie.api.resolver import Reply
from reverie.api.schemas import (
    ExportedHeldJob,
    ExportedJob,
    ExportedNarrative,
    ExportedSession,
    ExportedUsage,
    JobAccepted,
    ListUsersQuery,
    MemoryCounts,
    NarrativeAnswer,
    NarrativePending,
    UserExport,
    UserJobList,
    UserPage,
    UserSummary,
    check_user_id,
)
from reverie.cache import pending, working_memory
from reverie.domain.errors import NarrativeFailed, NotFound, ValidationFailed
from reverie.domain.fields import as_utc, utcnow
from reverie.domain.tiers import TierStatus
from reverie.jobs import narratives as narrative_jobs
from reverie.jobs import status as job_status
from reverie.store import memories, processed_jobs, user_data
from reverie.store import users as user_index

# A Lambda answer is at most 6 MB: an export page stops at about this size, with room for the JSON around it.
EXPORT_PAGE_BYTES = 4 * 1024 * 1024
EXPORT_BATCH_ROWS = 500
# The export's parts read from Valkey, after Postgres's (reverie.store.user_data.EXPORT_PARTS).
VALKEY_PARTS = ("working_memory", "pending")
# What the rows of each part are answered as (memories and events are read as their models already).
EXPORTED = {"narratives": ExportedNarrative, "jobs": ExportedJob, "usage": ExportedUsage,
            "held_jobs": ExportedHeldJob}


def get_narrative(clients, project_id: str, user_id: str) -> Reply:
    """200 with the newest version, read from its hot copy (Postgres on a miss); never generated in process.
    Without one: 202 while a job to write it is pending (one is queued now when none is and the user has memories),
    with why it waits when an attempt failed; 404 when the user has no memories to write one from; 503
    narrative_failed when the last job failed for good, with its error (POST .../regenerate tries again)."""
    check_user_id(user_id)
    began = time.time()
    story = narrative_jobs.current(clients, project_id, user_id, began_at=began)
    if story is not None:
        return Reply(200, NarrativeAnswer(
            narrative=story["text"], version=story["version"], generated_at=story["generated_at"],
            citations=[str(c) for c in story["citations"] or []],
        ))
    pending = narrative_jobs.pending(clients, project_id, user_id)
    last = processed_jobs.last_narrative_outcome(clients.db, project_id, user_id)
    if pending or (last is not None and last["status"] == TierStatus.FAILED):
        job_id = pending or last["job_id"]
        failing = last is not None and last["job_id"] == job_id and last["status"] == TierStatus.FAILED
        return Reply(202, NarrativePending(job_id=job_id, reason=_failure(last) if failing else None))
    if last is not None and last["status"] == TierStatus.DEAD:
        raise NarrativeFailed(f"the narrative could not be written: job {last['job_id']} {_failure(last)}; "
                              f"POST /v1/users/{user_id}/narrative/regenerate tries again")
    if not memories.has_current(clients.db, project_id, user_id):
        raise NotFound(f"user {user_id!r} has no narrative: there are no memories to write one from yet")
    asked = narrative_jobs.request(clients, project_id, user_id, "missing", began_at=began)
    return Reply(202, NarrativePending(job_id=asked.job_id))


def _failure(outcome: dict[str, Any]) -> str:
    return f"{outcome['reason']} ({outcome['error']})" if outcome.get("error") else str(outcome["reason"])


def regenerate_narrative(clients, project_id: str, user_id: str) -> JobAccepted:
    """A new version is queued, unless a job is pending already: then its id is answered (it reads the memories
    as they are when it runs)."""
    check_user_id(user_id)
    return JobAccepted(job_id=narrative_jobs.request(clients, project_id, user_id, "requested").job_id)


def export_user(clients, project_id: str, user_id: str, cursor: str | None = None,
                page_bytes: int = EXPORT_PAGE_BYTES) -> UserExport:
    """Everything stored for the user, a page of about `page_bytes` at a time: every memory (superseded too),
    events, narratives, job outcomes, the cost ledger, the jobs held in reflection windows, the turns still
    in working memory and those recalled until learned (pending), in that order; `next_cursor` continues it."""
    check_user_id(user_id)
    part, after = _read_cursor(cursor)
    page = UserExport(user_id=user_id, exported_at=utcnow())
    used = 0
    parts = [*user_data.EXPORT_PARTS, *VALKEY_PARTS]
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
    if part == "pending":
        for n, (_, turn) in enumerate(pending.read(clients.valkey, project_id, user_id)):
            key = f"{n:06d}"  # the list's order (oldest first); an entry removed meanwhile shifts it by one at most
            if after is None or key > after[0]:
                yield turn, [key]
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
    types = ["text"] if part in VALKEY_PARTS else [t for _, t in user_data.EXPORT_PARTS[part][1]]
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
        if part not in user_data.EXPORT_PARTS and part not in VALKEY_PARTS:
            raise ValueError(part)
        return part, None if after is None else _check_key(part, after)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("cursor is not one this API returned") from exc


def list_users(clients, project_id: str, query: ListUsersQuery) -> UserPage:
    """The project's users a page at a time, in user_id order, with what is stored of each (see UserPage)."""
    after = _read_user_cursor(query.cursor) if query.cursor else None
    rows, more = user_index.page(clients.db, project_id, limit=query.limit, after=after, prefix=query.prefix)
    users = [UserSummary(
        user_id=row["user_id"], jobs=row["jobs"], failed_jobs=row["failed"], held_jobs=row["held"],
        narrative_version=row["narrative_version"], last_activity=row["last_activity"],
        memories=MemoryCounts(episodic=row["episodic"], semantic=row["semantic"], procedural=row["procedural"],
                              superseded=row["superseded"]),
    ) for row in rows]
    next_cursor = _user_cursor(users[-1].user_id) if more and users else None
    return UserPage(users=users, next_cursor=next_cursor)


def _user_cursor(user_id: str) -> str:
    return base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")


def _read_user_cursor(cursor: str) -> str:
    try:
        return check_user_id(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, TypeError) as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ValidationFailed("cursor is not one this API returned") from exc


def user_jobs(clients, project_id: str, user_id: str, limit: int) -> UserJobList:
    """The user's recent jobs with each tier's outcome and reason (see reverie.jobs.status.user_jobs)."""
    check_user_id(user_id)
    found = job_status.user_jobs(clients, project_id, user_id, limit)
    return UserJobList(user_id=user_id, jobs=found.jobs, degraded=found.degraded)


def forget_user(clients, project_id: str, user_id: str) -> JobAccepted:
    """Forget a user everywhere (see reverie.forget); the job id names the forget's receipt."""
    check_user_id(user_id)
    return JobAccepted(job_id=forget.forget_user(clients, project_id, user_id))
