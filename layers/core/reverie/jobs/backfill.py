"""Backfill: conversations held before Reverie was, learned as if they had been said to it.

A conversation (a user, a session, its timestamped turns) becomes reflection jobs that keep the turns' own times,
so episodes and facts are dated when they happened, not when they were imported. The jobs go the way a chat turn's
go (reverie.jobs.delivery: the topic, or the user's outbox), in the conversation's order, each user's in their FIFO
group.

A job's id is derived from what it holds (project, user, session, and its turns' ids, roles, times and words), so
the same conversation always makes the same jobs. A job is skipped when it was published before: its marker is in
Valkey (14 days), or a tier has recorded its outcome. So a second run publishes nothing, and an interrupted run
continues where it stopped. A job made of the same words but edited turns is another job.

A user who was forgotten is not imported again (their tombstone says so) unless the caller insists: an old export
must not bring back someone who asked to be forgotten.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError

from reverie.cache import job_markers
from reverie.domain.errors import ServiceUnavailable, ValidationFailed
from reverie.domain.fields import MessageText, Metadata, SafeId, Strict, as_utc, utcnow
from reverie.domain.memory import Turn
from reverie.jobs import delivery
from reverie.jobs.message import MAX_JOB_BYTES, MAX_TURNS_PER_JOB, ReflectionJob, encode, make_job
from reverie.platform.observability import logger
from reverie.store import processed_jobs, tombstones

# Job and turn ids are UUIDs in this namespace, made from what they hold.
NAMESPACE = uuid.UUID("5f0c2a4e-8d1b-4c36-9a57-3e2b1d6c7f80")
MAX_TURNS_PER_CONVERSATION = 10_000
# Room in a job for what is not its turns (ids, metadata of up to 4 KB, the JSON around them).
JOB_OVERHEAD_BYTES = 8 * 1024


class BackfillTurn(Strict):
    role: Literal["user", "assistant", "system"]
    content: MessageText
    created_at: Annotated[datetime, AfterValidator(as_utc)] = Field(
        description="When it was said (RFC 3339; without an offset, UTC): what it teaches is dated then.")
    turn_id: SafeId | None = None


class Conversation(Strict):
    """One session of one user, as it happened."""

    user_id: SafeId
    session_id: SafeId
    turns: list[BackfillTurn] = Field(min_length=1, max_length=MAX_TURNS_PER_CONVERSATION)
    metadata: Metadata = Field(default_factory=dict)


def read_conversation(data: Any) -> Conversation:
    """A conversation from its JSON form; ValidationFailed names the first field that is wrong."""
    try:
        return Conversation.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(the conversation)"
        raise ValidationFailed(f"{where}: {first['msg']}") from None


def jobs_for(project_id: str, conversation: Conversation, *, now: datetime | None = None) -> list[ReflectionJob]:
    """The conversation's jobs, in order: its turns (sorted by time, ties kept in order) split so each job fits a
    queue message, each job's id derived from what it holds. Made `now` (their turns keep their own times): a job
    made before a forget of its user would be dropped, however old its words."""
    key = f"{project_id}\n{conversation.user_id}\n{conversation.session_id}"
    ordered = sorted(enumerate(conversation.turns), key=lambda it: (it[1].created_at, it[0]))
    turns = [Turn(turn_id=t.turn_id or _derived(key, "turn", str(i), t.created_at.isoformat(), t.role, t.content),
                  role=t.role, content=t.content, created_at=t.created_at) for i, t in ordered]
    made = now or utcnow()
    jobs = []
    for chunk in _chunks(turns):
        job_id = _derived(key, "job", *(f"{t.turn_id}\n{t.role}\n{t.created_at.isoformat()}\n{t.content}"
                                        for t in chunk))
        jobs.append(make_job(project_id=project_id, user_id=conversation.user_id, session_id=conversation.session_id,
                             turns=chunk, source="backfill", metadata=conversation.metadata, job_id=job_id,
                             created_at=made))
    for job in jobs:
        size = len(encode(job))
        if size > MAX_JOB_BYTES:  # the overhead kept for the rest was not enough: never sent as too large
            raise ValidationFailed(f"a job of session {conversation.session_id} would be {size} bytes; "
                                   f"at most {MAX_JOB_BYTES}")
    return jobs


def _chunks(turns: list[Turn]) -> list[list[Turn]]:
    chunks: list[list[Turn]] = [[]]
    used = 0
    for turn in turns:
        size = len(json.dumps(turn.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":"))) + 1
        if chunks[-1] and (len(chunks[-1]) >= MAX_TURNS_PER_JOB or used + size > MAX_JOB_BYTES - JOB_OVERHEAD_BYTES):
            chunks.append([])
            used = 0
        chunks[-1].append(turn)
        used += size
    return chunks


def _derived(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()))


# ---------------------------------------------------------------- publishing


@dataclass
class Imported:
    """What became of one conversation."""

    user_id: str
    session_id: str
    turns: int = 0
    jobs: int = 0
    published: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "session_id": self.session_id, "turns": self.turns, "jobs": self.jobs,
                "published": self.published, "skipped": self.skipped, "failed": self.failed, "errors": self.errors}


def import_conversation(clients, project_id: str, conversation: Conversation, *,
                        include_forgotten: bool = False) -> Imported:
    """Publish the conversation's jobs that were not published before, in order. A job the topic refuses for good
    is counted failed (with why) and the later ones go on, as the chat's do; when neither the topic nor the outbox
    takes one, ServiceUnavailable stops the import there (run it again to continue)."""
    jobs = jobs_for(project_id, conversation)
    result = Imported(conversation.user_id, conversation.session_id, turns=len(conversation.turns), jobs=len(jobs))
    if not include_forgotten and _forgotten(clients, project_id, conversation.user_id):
        result.skipped = len(jobs)
        result.errors.append(f"user {conversation.user_id} was forgotten: not imported again")
        return result
    seen = published_before(clients, project_id, [j.job_id for j in jobs])
    for job in jobs:
        if job.job_id in seen:
            result.skipped += 1
            continue
        delivered = delivery.deliver(clients, job)
        if delivered.route in ("topic", "outbox"):
            result.published += 1
        elif delivered.route == "refused":
            result.failed += 1
            result.errors.append(f"job {job.job_id} refused by the topic: {delivered.reason}")
        elif delivered.route == "forgotten":
            result.skipped += 1
            result.errors.append(f"user {conversation.user_id} was forgotten meanwhile")
        else:
            raise ServiceUnavailable("neither the topic nor the outbox took a job; run the backfill again to "
                                     "continue where it stopped")
    return result


def published_before(clients, project_id: str, job_ids: list[str]) -> set[str]:
    """Which of these jobs were published before: a marker in Valkey says so (while it lives), or an outcome some
    tier recorded."""
    try:
        marked = set(job_markers.known_many(clients.valkey, project_id, job_ids))
    except Exception as exc:  # Postgres still knows every job a tier has seen
        logger.warning("job markers unavailable; checking recorded outcomes only", extra={"error": type(exc).__name__})
        marked = set()
    rest = [j for j in job_ids if j not in marked]
    return marked | processed_jobs.recorded(clients.db, project_id, rest)


def _forgotten(clients, project_id: str, user_id: str) -> bool:
    with clients.db.read(project_id, cursor_factory=None) as cur:  # one round trip, not a transaction's four
        return tombstones.forgotten_at(cur, project_id, user_id) is not None
