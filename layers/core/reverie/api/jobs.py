"""The memory API's view of jobs and of the project: a job's status (with polling hints, or a forget's
receipt) and the project's status report."""

from __future__ import annotations

import redis

from reverie.api.resolver import Reply
from reverie.cache import job_markers
from reverie.domain.outcomes import JobStatus, TierOutcome
from reverie.domain.tiers import Tier, TierStatus
from reverie.jobs import status as job_status
from reverie.ops.status import ProjectStatus, project_status


def job(clients, project_id: str, job_id: str, if_none_match: str | None = None) -> Reply:
    """A job's status per tier, with an ETag (304 when unchanged) and Retry-After while it is still moving."""
    status = _forget_outcome(clients, project_id, job_id) or job_status.job_status(clients, project_id, job_id)
    hints = job_status.poll_hints(status)
    if hints.matches(if_none_match):
        return Reply(304, None, hints.headers())
    return Reply(200, status, hints.headers())


def _forget_outcome(clients, project_id: str, job_id: str) -> JobStatus | None:
    try:
        receipt = job_markers.forget_receipt(clients.valkey, project_id, job_id)
    except redis.RedisError:
        return None
    if receipt is None:
        return None
    reason = "user forgotten"
    return JobStatus(job_id=job_id, status=TierStatus.DONE,
                     tiers={t: TierOutcome(status=TierStatus.DONE, reason=reason) for t in Tier})


def status(clients, project_id: str) -> ProjectStatus:
    """The project's own figures (global ones are for operators: the admin function's ops.status)."""
    return project_status(clients, project_id)
