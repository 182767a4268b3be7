"""What the status API knows of jobs Postgres has not seen: a "queued" marker per job, and the receipt of a
forget.

Postgres only learns of a job when a reflector finishes it, and the chat path never writes Postgres, so the
producer leaves a small marker: it lets the status API say "queued" instead of 404.
"""

from __future__ import annotations

import json
from typing import Any

from reverie.cache import keys

JOB_MARKER_TTL_S = 14 * 24 * 3600


def remember(pipe_or_valkey, job) -> None:
    """Add a reflection job's marker to a pipeline (or send it directly): {user_id, session_id, created_at,
    source}, and index it under its user."""
    value = json.dumps({"user_id": job.user_id, "session_id": job.session_id,
                        "created_at": job.created_at.isoformat(), "source": job.source})
    index = keys.user_jobs(job.project_id, job.user_id)
    pipe_or_valkey.set(keys.job_marker(job.project_id, job.job_id), value, ex=JOB_MARKER_TTL_S)
    pipe_or_valkey.sadd(index, job.job_id)
    pipe_or_valkey.expire(index, JOB_MARKER_TTL_S)


def known(valkey, project_id: str, job_id: str) -> dict[str, Any] | None:
    raw = valkey.get(keys.job_marker(project_id, job_id))
    return json.loads(raw) if raw else None


def mark_refused(valkey, project_id: str, job_id: str, reason: str) -> None:
    """The topic refused the job for good: its status says failed, with why, for as long as the marker lives."""
    key = keys.job_marker(project_id, job_id)
    marker = json.loads(valkey.get(key) or "{}")
    marker["refused"] = reason[:1000]
    valkey.set(key, json.dumps(marker), ex=JOB_MARKER_TTL_S)


def record_forget(valkey, project_id: str, job_id: str, outcome: dict[str, Any]) -> None:
    """The receipt of a forget, for its job status. It names counts only, nothing of the user."""
    valkey.set(keys.forget_receipt(project_id, job_id), json.dumps(outcome), ex=JOB_MARKER_TTL_S)


def forget_receipt(valkey, project_id: str, job_id: str) -> dict[str, Any] | None:
    raw = valkey.get(keys.forget_receipt(project_id, job_id))
    return json.loads(raw) if raw else None
