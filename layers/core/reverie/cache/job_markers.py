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


def user_job_ids(valkey, project_id: str, user_id: str, limit: int) -> list[str]:
    """Ids of the user's jobs whose markers were left (the last 14 days), at most `limit` of them."""
    found = []
    for job_id in valkey.sscan_iter(keys.user_jobs(project_id, user_id), count=500):
        found.append(job_id.decode() if isinstance(job_id, bytes) else job_id)
        if len(found) >= limit:
            break
    return found


def known_many(valkey, project_id: str, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The markers of these jobs that still exist, by job id (one pipeline; the markers have slots of their own)."""
    if not job_ids:
        return {}
    pipe = valkey.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.get(keys.job_marker(project_id, job_id))
    return {job_id: json.loads(raw) for job_id, raw in zip(job_ids, pipe.execute(), strict=True) if raw}


def remember_narrative(writes, job) -> None:
    """Add a narrative job's marker to `writes` (a users.UserWrites): its status says queued until the worker
    records an outcome. Indexed under its user like a reflection job's, so a forget finds it."""
    value = json.dumps({"kind": "narrative", "user_id": job.user_id, "created_at": job.created_at.isoformat(),
                        "reason": job.reason})
    index = keys.user_jobs(job.project_id, job.user_id)
    writes.set(keys.job_marker(job.project_id, job.job_id), value, ex=JOB_MARKER_TTL_S)
    writes.sadd(index, job.job_id)
    writes.expire(index, JOB_MARKER_TTL_S)


def drop(valkey, project_id: str, job_id: str) -> None:
    """A job that was never queued after all (its send failed): no status says it is."""
    valkey.delete(keys.job_marker(project_id, job_id))
