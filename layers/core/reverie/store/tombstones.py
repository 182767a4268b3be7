"""The user_tombstones table, and the per-user lock a reflection and a forget both take.

A forget deletes a user's rows and leaves a tombstone; a job made before it is dropped when it arrives. The
lock orders the two: a reflection being written finishes first (and the forget deletes what it wrote), one
that starts later waits for the forget's commit and then finds the tombstone.
"""

from __future__ import annotations

from datetime import datetime

from reverie.domain.tiers import Tier


def lock_user_tier(cur, project_id: str, user_id: str, tier: Tier) -> None:
    """Serialise reflections of one user and tier (a redelivery racing a slow first delivery) until commit."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"reflect:{project_id}:{user_id}:{Tier(tier).value}",))


def lock_user_narratives(cur, project_id: str, user_id: str) -> None:
    """Serialise a new narrative version of one user with a forget of that user (which takes it too) until commit:
    the version is written before the forget (which deletes it), or finds its tombstone."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"narrative:{project_id}:{user_id}",))


def forgotten_at(cur, project_id: str, user_id: str) -> datetime | None:
    cur.execute("SELECT forgotten_at FROM user_tombstones WHERE project_id = %s AND user_id = %s",
                (project_id, user_id))
    row = cur.fetchone()
    return row[0] if row else None
