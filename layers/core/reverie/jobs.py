"""Reflection jobs: made and checked by the producer, published to the FIFO topic, checked again when read.

A job carries its scope (project, user) and its turns; a job without them is refused at both ends (seed 000).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from reverie.errors import InvalidJob, validation_details
from reverie.models import ReflectionJob, Turn
from reverie.working_memory import escape


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
    # Round-trip through the reader: whatever we send, a consumer is able to read (and scope).
    body = job.model_dump_json()
    parse_job(body)
    return body


def publish(sns, topic_arn: str, job: ReflectionJob) -> str:
    """Publish to the reflection topic: group = project and user (per-user order), dedup id = job id."""
    response = sns.publish(
        TopicArn=topic_arn,
        Message=encode(job),
        MessageGroupId=job.group_id,
        MessageDeduplicationId=job.job_id,
    )
    return response["MessageId"]


def _reason(exc: ValidationError) -> str:
    missing = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing" and e["loc"]]
    if missing:
        return f"job is missing {', '.join(missing)}: every job must carry its project and user"
    first = exc.errors()[0]
    return f"job field {'.'.join(str(p) for p in first['loc']) or '(root)'}: {first['msg']}"


# ---------------------------------------------------------------- the "queued" marker
# Postgres only learns of a job when a reflector finishes it, and the chat path never writes Postgres,
# so the producer leaves a small marker in Valkey: it lets the status API say "queued" instead of 404.
JOB_MARKER_TTL_S = 14 * 24 * 3600


def marker_key(project_id: str, job_id: str) -> str:
    return f"job:{escape(project_id)}:{escape(job_id)}"


def user_jobs_key(project_id: str, user_id: str) -> str:
    """The set of one user's marked job ids, so a forget finds them without scanning the project."""
    return f"jobs:{escape(project_id)}:{escape(user_id)}"


def remember(pipe_or_valkey, job: ReflectionJob) -> None:
    """Add the marker to a pipeline (or send it directly): {user_id, session_id, created_at}."""
    value = json.dumps({"user_id": job.user_id, "session_id": job.session_id,
                        "created_at": job.created_at.isoformat(), "source": job.source})
    index = user_jobs_key(job.project_id, job.user_id)
    pipe_or_valkey.set(marker_key(job.project_id, job.job_id), value, ex=JOB_MARKER_TTL_S)
    pipe_or_valkey.sadd(index, job.job_id)
    pipe_or_valkey.expire(index, JOB_MARKER_TTL_S)


def known(valkey, project_id: str, job_id: str) -> dict[str, Any] | None:
    raw = valkey.get(marker_key(project_id, job_id))
    return json.loads(raw) if raw else None


def forget_markers(valkey, project_id: str, user_id: str) -> int:
    """Delete one user's job markers and their index; returns how many keys went."""
    index = user_jobs_key(project_id, user_id)
    job_ids = [j.decode() if isinstance(j, bytes) else j for j in valkey.smembers(index)]
    return int(valkey.delete(index, *(marker_key(project_id, j) for j in job_ids)))
