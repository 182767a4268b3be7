"""Forgetting a user, everywhere: the one place that knows every trace a user leaves.

Postgres: memories (tiers 2-4), their events, narratives, job outcomes, held jobs and ledger rows, with a
tombstone so that jobs still in flight are dropped when they arrive. Valkey: tier 1, parked jobs, job markers,
remembered chat answers, the narrative's hot copy and its guard.
"""

from __future__ import annotations

import time

import redis

from reverie.cache import job_markers, users
from reverie.domain.errors import ServiceUnavailable
from reverie.domain.fields import new_id, utcnow
from reverie.domain.tiers import Tier
from reverie.platform.observability import logger
from reverie.store import tombstones, user_data


def forget_user(clients, project_id: str, user_id: str) -> str:
    """Forget a user and return the id of the forget's receipt (for its job status).

    Safe to repeat: a retry after a failure finishes what the first call started."""
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        # The reflectors' per-user locks: a reflection being written finishes first (and its rows are deleted
        # here); one that starts later waits for this commit and then finds the tombstone.
        for tier in Tier:
            tombstones.lock_user_tier(cur, project_id, user_id, tier)
        tombstones.lock_user_narratives(cur, project_id, user_id)  # and a narrative version being written
        counts = user_data.forget_user(cur, project_id, user_id)
    try:
        # The mark first: work begun before it (a turn still being answered) cannot write the user back after
        # the keys are gone (reverie.cache.users.UserWrites).
        users.mark_forgotten(clients.valkey, project_id, user_id, time.time())
        counts.update(users.delete_user(clients.valkey, project_id, user_id))
        job_id = new_id()
        job_markers.record_forget(clients.valkey, project_id, job_id,
                                  {"forgotten_at": utcnow().isoformat(), "counts": counts})
    except redis.RedisError as exc:
        raise ServiceUnavailable("working memory could not be cleared; repeat the request") from exc
    logger.info("user forgotten", extra={"job_id": job_id, "counts": counts})
    return job_id

