"""The memory API's operations on users: the narrative (read, or queued on a miss; regenerated on request),
the export of everything stored, and forget."""

from __future__ import annotations

import contextlib

import redis
from botocore.exceptions import BotoCoreError, ClientError

from reverie import forget
from reverie.api.resolver import Reply
from reverie.api.schemas import (
    ExportedSession,
    JobAccepted,
    NarrativeAnswer,
    NarrativePending,
    UserExport,
    check_user_id,
)
from reverie.cache import narratives as narrative_guard
from reverie.cache import working_memory
from reverie.domain.errors import ServiceUnavailable
from reverie.domain.fields import utcnow
from reverie.jobs import narratives as narrative_jobs
from reverie.store import narratives, user_data


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
        first = narrative_guard.claim_generation(clients.valkey, project_id, user_id)
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


def export_user(clients, project_id: str, user_id: str) -> UserExport:
    """Everything stored for the user: every memory (superseded too), events, narratives, job outcomes,
    the cost ledger, the jobs held in reflection windows and the turns still in working memory."""
    check_user_id(user_id)
    rows = user_data.export(clients.db, project_id, user_id)
    return UserExport(
        user_id=user_id, exported_at=utcnow(), memories=rows["memories"], events=rows["events"],
        narratives=rows["narratives"], jobs=rows["jobs"], usage=rows["usage"], held_jobs=rows["held_jobs"],
        working_memory=[ExportedSession(session_id=session_id, turns=turns) for session_id, turns in
                        working_memory.sessions(clients.valkey, project_id, user_id).items()],
        truncated=rows["truncated"],
    )


def forget_user(clients, project_id: str, user_id: str) -> JobAccepted:
    """Forget a user everywhere (see reverie.forget); the job id names the forget's receipt."""
    check_user_id(user_id)
    return JobAccepted(job_id=forget.forget_user(clients, project_id, user_id))
