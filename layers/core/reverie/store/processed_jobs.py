"""Reads of job outcomes (processed_jobs) that the producer side needs."""

from __future__ import annotations

from datetime import datetime

from reverie.models import TIERS
from reverie.store.db import Database


def any_tier_processed(db: Database, project_id: str, job_id: str) -> bool:
    """True when at least one tier has recorded an outcome for the job: proof that it was published."""
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM processed_jobs WHERE project_id = %s AND job_id = %s LIMIT 1", (project_id, job_id))
        return cur.fetchone() is not None


def last_processed_at(db: Database) -> dict[str, datetime | None]:
    """When each tier last recorded any job outcome (all projects): one index probe per tier."""
    with db.transaction() as conn, conn.cursor() as cur:
        out = {}
        for tier in TIERS:
            cur.execute("SELECT max(processed_at) FROM processed_jobs WHERE tier = %s", (tier.value,))
            out[tier.value] = cur.fetchone()[0]
        return out
