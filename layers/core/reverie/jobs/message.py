"""The job messages: made and checked by the producer, checked again where they are read.

A job carries its scope (project, user) and its turns, never a pointer to cache keys; a job without its scope
is refused at both ends, so nothing is ever stored unscoped.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from reverie.domain.errors import InvalidJob, ReverieError, validation_details
from reverie.domain.fields import Metadata, SafeId, Strict, new_id, utcnow
from reverie.domain.memory import Turn

# What SNS FIFO topics and SQS FIFO queues accept. moto, the local stand-in, accepts more, so `check_fits`
# refuses here what AWS would refuse there.
MAX_MESSAGE_BYTES = 262_144  # a message body (we send no attributes)
MAX_JOB_BYTES = 240 * 1024  # a job as made: room under the limit for whatever SNS adds
MAX_GROUP_ID_CHARS = 128
MAX_TURNS_PER_JOB = 200
_GROUP_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # letters, digits and punctuation
_NOT_SQS_TEXT = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class JobRefused(ReverieError):
    """A job the topic will not take (too large, a group id or a character it refuses): retrying cannot help."""

    status = 422
    code = "job_refused"


def message_group(project_id: str, user_id: str) -> str:
    """One user's FIFO message group. Two ids of up to 128 characters can make a longer group id than FIFO
    allows: those are hashed (stable, so the user's jobs stay in one group and in order)."""
    group = f"{project_id}:{user_id}"
    if len(group) <= MAX_GROUP_ID_CHARS:
        return group
    return "h:" + hashlib.sha256(group.encode()).hexdigest()


def check_fits(body: str, group_id: str) -> None:
    """Raise JobRefused when SNS or SQS would refuse this message."""
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise JobRefused(f"the message is {size} bytes; a queue message is at most {MAX_MESSAGE_BYTES}")
    if not _GROUP_ID.match(group_id):
        raise JobRefused("the message group id must be 1 to 128 letters, digits or punctuation characters")
    found = _NOT_SQS_TEXT.search(body)
    if found:
        raise JobRefused(f"the message holds U+{ord(found.group()):04X}, which SQS refuses")


class ReflectionJob(Strict):
    """One unit of slow work for the reflectors, self-contained: it carries its turns.

    project_id and user_id are required and validated both where a job is made and where it is read.
    """

    schema_version: Literal[1] = 1
    job_id: SafeId = Field(default_factory=new_id)
    project_id: SafeId
    user_id: SafeId
    session_id: SafeId
    source: Literal["chat", "api", "backfill"] = "chat"
    turns: list[Turn] = Field(min_length=1, max_length=MAX_TURNS_PER_JOB)
    metadata: Metadata = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def group_id(self) -> str:
        """The FIFO message group: one user of one project, so a user's jobs apply in order."""
        return message_group(self.project_id, self.user_id)


class NarrativeJob(Strict):
    schema_version: Literal[1] = 1
    job_id: SafeId = Field(default_factory=new_id)
    project_id: SafeId
    user_id: SafeId
    reason: Literal["stale", "missing", "requested", "backfill"] = "stale"
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def group_id(self) -> str:
        return message_group(self.project_id, self.user_id)


def make_job(
    *, project_id: str, user_id: str, session_id: str, turns: list[Turn], source: str = "chat",
    metadata: dict[str, Any] | None = None, job_id: str | None = None, created_at: datetime | None = None,
) -> ReflectionJob:
    data: dict[str, Any] = {
        "project_id": project_id, "user_id": user_id, "session_id": session_id, "source": source,
        "turns": turns, "metadata": metadata or {},
    }
    if job_id:
        data["job_id"] = job_id
    if created_at is not None:
        data["created_at"] = created_at
    try:
        return ReflectionJob.model_validate(data)
    except ValidationError as exc:
        raise InvalidJob(_reason(exc), details=validation_details(exc)) from exc


def parse_job(body: str | bytes | dict[str, Any]) -> ReflectionJob:
    """Read a job from a queue message. A body that is not a valid, scoped job raises InvalidJob."""
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else body
    except json.JSONDecodeError as exc:
        raise InvalidJob(f"job is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise InvalidJob("job is not a JSON object")
    try:
        return ReflectionJob.model_validate(data)
    except ValidationError as exc:
        raise InvalidJob(_reason(exc), details=validation_details(exc)) from exc


def encode(job: ReflectionJob) -> str:
    """The job as it travels (on the topic, in the outbox): JSON with every character outside ASCII escaped, so
    no character of a user's (or a model's) words can make the queue refuse it."""
    body = json.dumps(job.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":"))
    # Round-trip through the reader: whatever we send, a consumer is able to read (and scope).
    parse_job(body)
    return body


def make_jobs(*, project_id: str, user_id: str, session_id: str, turns: list[Turn], source: str = "api",
              metadata: dict[str, Any] | None = None) -> list[ReflectionJob]:
    """As many jobs as it takes for each to fit a queue message (at most MAX_JOB_BYTES), the turns in order."""
    jobs: list[ReflectionJob] = []
    batch: list[Turn] = []
    for turn in turns:
        candidate = make_job(project_id=project_id, user_id=user_id, session_id=session_id, turns=[*batch, turn],
                             source=source, metadata=metadata)
        if batch and (len(encode(candidate)) > MAX_JOB_BYTES or len(batch) >= MAX_TURNS_PER_JOB):
            jobs.append(make_job(project_id=project_id, user_id=user_id, session_id=session_id, turns=batch,
                                 source=source, metadata=metadata))
            batch = []
        batch.append(turn)
    jobs.append(make_job(project_id=project_id, user_id=user_id, session_id=session_id, turns=batch,
                         source=source, metadata=metadata))
    return jobs


def _reason(exc: ValidationError) -> str:
    missing = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing" and e["loc"]]
    if missing:
        return f"job is missing {', '.join(missing)}: every job must carry its project and user"
    first = exc.errors()[0]
    return f"job field {'.'.join(str(p) for p in first['loc']) or '(root)'}: {first['msg']}"
