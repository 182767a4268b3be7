"""The narrative guard: a cache miss queues one generation job per user, not one per poll."""

from __future__ import annotations

from reverie.cache import keys, users

# Later misses within this window only answer 202.
PENDING_TTL_S = 300


def claim_generation(valkey, project_id: str, user_id: str, began_at: float) -> bool:
    """True for the first miss in the window (it queues the job); False while one is pending, or when the user
    was forgotten after the request began (the guard would name them)."""
    writes = users.UserWrites(valkey, project_id, user_id, began_at)
    writes.set(keys.narrative_pending(project_id, user_id), "1", nx=True, ex=PENDING_TTL_S)
    written = writes.execute()
    return bool(written and written[0])


def release_generation(valkey, project_id: str, user_id: str) -> int:
    """Let the next miss queue a job (the last one could not be queued, or the user was forgotten)."""
    return int(valkey.delete(keys.narrative_pending(project_id, user_id)))
