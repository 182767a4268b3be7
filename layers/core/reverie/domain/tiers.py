"""The memory tiers, what happened to a memory (its events), and what a tier did with a job (its status)."""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    EPISODIC = "episodic"
    SEMANTIC = "semantic"
    PROCEDURAL = "procedural"


TIERS: tuple[Tier, ...] = (Tier.EPISODIC, Tier.SEMANTIC, Tier.PROCEDURAL)
# A narrative job is no tier's, but its outcome is recorded beside theirs (processed_jobs.tier), under this name.
NARRATIVE = "narrative"


class EventKind(StrEnum):
    ADD = "ADD"
    UPDATE = "UPDATE"
    SUPERSEDE = "SUPERSEDE"
    DELETE = "DELETE"


class TierStatus(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    EMPTY = "empty"  # processed, nothing extracted; `reason` says why
    FAILED = "failed"
    DEAD = "dead"  # in the DLQ


FINAL_TIER_STATUSES = frozenset({TierStatus.DONE, TierStatus.EMPTY, TierStatus.FAILED, TierStatus.DEAD})
