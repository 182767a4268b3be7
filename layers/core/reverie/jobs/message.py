"""The job messages: made and checked by the producer, checked again where they are read.

A job carries its scope (project, user) and its turns, never a pointer to cache keys; a job without its scope
is refused at both ends, so nothing is ever stored unscoped.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from reverie.domain.errors import InvalidJob, validation_details
from reverie.domain.fields import Metadata, SafeId, Strict, new_id, utcnow
from reverie.domain.memory import Turn


class ReflectionJob(Strict):
    """One unit of slow work for the reflectors, self-contained: it carries its turns.

    project_id and user_id are required and validated both where a job is made and where it is read.
    """

    schema_version: Literal[1] = 1
    job_id: SafeId = Field(default_factory=new_id)
    project_id: SafeId
    user_id: SafeId
    session_id: SafeId
    source: Literal["chat", "api"] = "chat"
    turns: list[Turn] = Field(min_length=1, max_length=200)
    metadata: Metadata = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def group_id(self) -> str:
        """The FIFO message group: one user of one project, so a user's jobs apply in order."""
        return f"{self.project_id}:{self.user_id}"


class NarrativeJob(Strict):
    schema_version: Literal[1] = 1
    job_id: SafeId = Field(default_factory=new_id)
    project_id: SafeId
    user_id: SafeId
    reason: Literal["stale", "missing", "requested"] = "stale"
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def group_id(self) -> str:
        return f"{self.project_id}:{self.user_id}"


def make_job(
    *, project_id: str, user_id: str, session_id: str, turns: list[Turn], source: str = "chat",
    metadata: dict[str, Any] | None = None, job_id: str | None = None,
) -> ReflectionJob:
    data: dict[str, Any] = {
        "project_id": project_id, "user_id": user_id, "session_id": session_id, "source": source,
        "turns": turns, "metadata": metadata or {},
    }
    if job_id:
        data["job_id"] = job_id
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
    """The job as it travels (on the topic, in the outbox)."""
    # Round-trip through the reader: whatever we send, a consumer is able to read (and scope).
    body = job.model_dump_json()
    parse_job(body)
    return body


def _reason(exc: ValidationError) -> str:
    missing = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing" and e["loc"]]
    if missing:
        return f"job is missing {', '.join(missing)}: every job must carry its project and user"
    first = exc.errors()[0]
    return f"job field {'.'.join(str(p) for p in first['loc']) or '(root)'}: {first['msg']}"
