"""What each tier did with a job: the outcome the reflectors record and the status API answers with."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from reverie.domain.tiers import Tier, TierStatus


class TierOutcome(BaseModel):
    status: TierStatus = TierStatus.QUEUED
    added: int = 0
    updated: int = 0
    superseded: int = 0
    reason: str | None = None
    error: str | None = None
    due_at: datetime | None = Field(None, description="While a reflection window holds the job: when the window is "
                                                      "due to close (the user quiet long enough, or its oldest job "
                                                      "held long enough), unless it fills first.")


class JobStatus(BaseModel):
    job_id: str
    status: TierStatus
    tiers: dict[Tier, TierOutcome]
    narrative: TierOutcome | None = Field(None, description="A narrative job's outcome (its `tiers` are empty): "
                                                            "done with the version written, empty, failed or dead "
                                                            "with the reason.")


class UserJob(JobStatus):
    """One of a user's jobs, as a list of recent jobs shows it: its outcome per tier and when it moved."""

    created_at: datetime | None = Field(None, description="When the job was made (known while a marker or a "
                                                          "reflection window still has it).")
    updated_at: datetime | None = Field(None, description="When a tier last recorded an outcome of it or held it.")
