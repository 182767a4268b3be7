"""A reflection job's status per tier (queued, done, empty, failed, dead), with hints for cheap polling:
an ETag to answer 304 when nothing changed, and a Retry-After while the job is still moving, so clients
need not poll every few seconds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from reverie.cache import job_markers
from reverie.domain.errors import NotFound, ServiceUnavailable
from reverie.domain.outcomes import JobStatus, TierOutcome
from reverie.domain.tiers import TIERS, TierStatus
from reverie.store import held_jobs, processed_jobs

# Seconds a client should wait before asking again. A queued job is usually done within seconds; a failed
# one is retried only after the queue's visibility timeout, so asking often is pointless.
RETRY_AFTER_QUEUED_S = 10
RETRY_AFTER_FAILED_S = 60
REFUSED = "refused"


def job_status(clients, project_id: str, job_id: str) -> JobStatus:
    """Each tier's outcome from processed_jobs; a tier with no row is queued when the producer's marker
    says the job exists (or another tier has a row). NotFound when neither knows the job."""
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        rows = {row["tier"]: row for row in processed_jobs.job_rows(cur, project_id, job_id)}
        held = held_jobs.held_tiers(cur, project_id, job_id)
    if not rows and not held:
        try:
            marker = job_markers.known(clients.valkey, project_id, job_id)
        except Exception as exc:  # Valkey only ever says "queued": without it we cannot tell queued from unknown
            raise ServiceUnavailable("job status is unavailable: the queue marker store is unreachable") from exc
        if marker is None:
            raise NotFound(f"no job {job_id} in this project")
        if marker.get("refused"):
            # The topic refused it for good: no tier will ever see it.
            outcome = TierOutcome(status=TierStatus.FAILED, reason=f"{REFUSED}: {marker['refused']}",
                                  error=marker["refused"])
            return JobStatus(job_id=job_id, status=TierStatus.FAILED, tiers=dict.fromkeys(TIERS, outcome))
    tiers = {}
    for tier in TIERS:
        row = rows.get(tier.value)
        tiers[tier] = TierOutcome(
            status=TierStatus(row["status"]), added=row["added"], updated=row["updated"],
            superseded=row["superseded"], reason=row["reason"], error=row["error"],
        ) if row else TierOutcome(status=TierStatus.QUEUED, reason=_held_reason(clients.settings, held.get(tier.value)))
    return JobStatus(job_id=job_id, status=overall([t.status for t in tiers.values()]), tiers=tiers)


def _held_reason(settings, held_at) -> str | None:
    """Why a queued job waits: it is held in the user's reflection window (see reverie.reflect.window)."""
    if held_at is None:
        return None
    due = (held_at + timedelta(seconds=settings.reflect_window_s)).isoformat(timespec="seconds")
    return (f"held with the user's next jobs, to learn them together: learned when "
            f"{settings.reflect_window_jobs} have gathered, or by {due}")


def overall(statuses: list[TierStatus]) -> TierStatus:
    """dead if any tier is dead, then failed, then queued while any tier is; otherwise done."""
    for status in (TierStatus.DEAD, TierStatus.FAILED, TierStatus.QUEUED):
        if status in statuses:
            return status
    return TierStatus.DONE


@dataclass(frozen=True)
class PollHints:
    etag: str
    retry_after_s: int | None  # None once nothing will change without a person (done, empty, dead, refused)

    @property
    def final(self) -> bool:
        return self.retry_after_s is None

    def headers(self) -> dict[str, str]:
        headers = {"ETag": self.etag, "Cache-Control": "no-cache"}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers

    def matches(self, if_none_match: str | None) -> bool:
        """True when the client's If-None-Match names this status: answer 304 Not Modified."""
        if not if_none_match:
            return False
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


def poll_hints(status: JobStatus) -> PollHints:
    digest = hashlib.sha256(status.model_dump_json().encode()).hexdigest()[:20]
    tiers = list(status.tiers.values())
    if any(t.status == TierStatus.QUEUED for t in tiers):
        retry: int | None = RETRY_AFTER_QUEUED_S
    elif any(t.status == TierStatus.FAILED and not (t.reason or "").startswith(REFUSED) for t in tiers):
        retry = RETRY_AFTER_FAILED_S
    else:
        retry = None
    return PollHints(etag=f'"{digest}"', retry_after_s=retry)
