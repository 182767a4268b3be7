"""What each tier did with a job: the outcome the reflectors record and the status API answers with."""

from __future__ import annotations

from pydantic import BaseModel

from reverie.domain.tiers import Tier, TierStatus


class TierOutcome(BaseModel):
    status: TierStatus = TierStatus.QUEUED
    added: int = 0
    updated: int = 0
    superseded: int = 0
    reason: str | None = None
    error: str | None = None


class JobStatus(BaseModel):
    job_id: str
    status: TierStatus
    tiers: dict[Tier, TierOutcome]
