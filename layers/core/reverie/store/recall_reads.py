"""What recall reads of one user in Postgres beside the search, in one round trip: the newest current rules, and which
of the jobs of what the user said (reverie.chat.pending) every tier has learned. As two reads they were two round
trips, and two statements' worth of client work, on the lookup that runs beside a chat turn's search."""

from __future__ import annotations

from collections.abc import Sequence

from reverie.domain.memory import ScoredMemory
from reverie.domain.tiers import Tier
from reverie.store import processed_jobs
from reverie.store.db import Database
from reverie.store.memories import CURRENT_OF_TIER, as_memory

# One row at least (the learned jobs, with no rule), one for each rule otherwise; newest first, as
# memories.current_by_tier lists them.
_READ = (
    f"SELECT l.learned, r.* FROM (SELECT ARRAY({processed_jobs.LEARNED}) AS learned) l"
    f" LEFT JOIN LATERAL ({CURRENT_OF_TIER}) r ON true"
)


def rules_and_learned(db: Database, project_id: str, user_id: str, *, limit: int,
                      job_ids: Sequence[str]) -> tuple[list[ScoredMemory], set[str]]:
    """The user's `limit` newest current rules (procedural memories), and which of `job_ids` every tier has learned
    (processed_jobs.learned)."""
    params = {**processed_jobs.learned_params(project_id, user_id, job_ids), "tier": Tier.PROCEDURAL.value,
              "limit": limit}
    with db.read(project_id) as cur:
        cur.execute(_READ, params)
        rows = cur.fetchall()
    learned = set(rows[0]["learned"]) if rows else set()
    rules = [as_memory(row, ScoredMemory) for row in rows if row["id"] is not None]  # (`learned` is not a field)
    return rules, learned
