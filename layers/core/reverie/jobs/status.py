"""A reflection job's status per tier (queued, done, empty, failed, dead), with hints for cheap polling:
an ETag to answer 304 when nothing changed, and a Retry-After while the job is still moving, so clients
need not poll every few seconds."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from reverie.cache import VALKEY_ERRORS, job_markers
from reverie.domain.errors import NotFound, ServiceUnavailable
from reverie.domain.fields import as_utc
from reverie.domain.outcomes import JobStatus, TierOutcome, UserJob
from reverie.domain.tiers import NARRATIVE, TIERS, Tier, TierStatus
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
        due = held_jobs.due_at(cur, project_id, job_id, clients.settings.reflect_window_s,
                               clients.settings.reflect_quiet_s) if held else {}
    if NARRATIVE in rows:
        return narrative_status(job_id, rows[NARRATIVE])
    if not rows and not held:
        try:
            marker = job_markers.known(clients.valkey, project_id, job_id)
        except Exception as exc:  # Valkey only ever says "queued": without it we cannot tell queued from unknown
            raise ServiceUnavailable("job status is unavailable: the queue marker store is unreachable") from exc
        if marker is None:
            raise NotFound(f"no job {job_id} in this project")
        if marker.get("refused"):
            # The topic refused it for good: no tier will ever see it.
            return JobStatus(job_id=job_id, status=TierStatus.FAILED, tiers=_refused(marker["refused"]))
        if marker.get("kind") == NARRATIVE:
            return narrative_status(job_id, None)
    tiers = _tiers(clients.settings, rows,
                   {tier: {"held_at": at, "due_at": due.get(tier)} for tier, at in held.items()})
    return JobStatus(job_id=job_id, status=overall([t.status for t in tiers.values()]), tiers=tiers)


def narrative_status(job_id: str, row: dict | None) -> JobStatus:
    """A narrative job's status: its recorded outcome (done, empty, failed or dead, with the reason and the error),
    or queued while only its marker knows it. It has no tiers."""
    outcome = (TierOutcome(status=TierStatus(row["status"]), reason=row["reason"], error=row["error"]) if row
               else TierOutcome(status=TierStatus.QUEUED, reason="queued for the narrative worker"))
    return JobStatus(job_id=job_id, status=outcome.status, tiers={}, narrative=outcome)


def _tiers(settings, rows: dict[str, dict], held: dict[str, dict]) -> dict[Tier, TierOutcome]:
    """Each tier's outcome: its recorded row, else queued (with why, when a reflection window holds it)."""
    tiers = {}
    for tier in TIERS:
        row = rows.get(tier.value)
        if row:
            tiers[tier] = TierOutcome(status=TierStatus(row["status"]), added=row["added"], updated=row["updated"],
                                      superseded=row["superseded"], reason=row["reason"], error=row["error"])
            continue
        window = held.get(tier.value) or {}
        tiers[tier] = TierOutcome(status=TierStatus.QUEUED, error=window.get("last_error"), due_at=window.get("due_at"),
                                  reason=_held_reason(settings, window.get("held_at"), window.get("due_at")))
    return tiers


def _refused(reason: str) -> dict[Tier, TierOutcome]:
    outcome = TierOutcome(status=TierStatus.FAILED, reason=f"{REFUSED}: {reason}", error=reason)
    return dict.fromkeys(TIERS, outcome)


def _held_reason(settings, held_at, due_at=None) -> str | None:
    """Why a queued job waits: it is held in the user's reflection window (see reverie.reflect.window)."""
    if held_at is None:
        return None
    due = (due_at or held_at + timedelta(seconds=settings.reflect_window_s)).isoformat(timespec="seconds")
    quiet = f"the user quiet for {settings.reflect_quiet_s} s or " if settings.reflect_quiet_s else ""
    return (f"held with the user's next jobs, to learn them together: learned when "
            f"{settings.reflect_window_jobs} have gathered, or once due at {due} ({quiet}the oldest job held "
            f"{settings.reflect_window_s} s) by the next window sweep")


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
    tiers = [*status.tiers.values(), *([status.narrative] if status.narrative else [])]
    if any(t.status == TierStatus.QUEUED for t in tiers):
        retry: int | None = min(_until_due(t) for t in tiers if t.status == TierStatus.QUEUED)
    elif any(t.status == TierStatus.FAILED and not (t.reason or "").startswith(REFUSED) for t in tiers):
        retry = RETRY_AFTER_FAILED_S
    else:
        retry = None
    return PollHints(etag=f'"{digest}"', retry_after_s=retry)


def _until_due(outcome: TierOutcome) -> int:
    """Seconds to wait for a queued tier: until its reflection window is due, when one holds it (nothing changes
    before, unless the window fills); RETRY_AFTER_QUEUED_S on its way to the tier or past its due time."""
    if outcome.due_at is None:
        return RETRY_AFTER_QUEUED_S
    left = math.ceil((outcome.due_at - datetime.now(UTC)).total_seconds())
    return left if left > 0 else RETRY_AFTER_QUEUED_S


# A user's recent jobs read at most this many of the user's job markers (they live 14 days) and held rows.
USER_MARKERS_READ = 5000
USER_HELD_READ = 500


@dataclass(frozen=True)
class UserJobs:
    jobs: list[UserJob]
    degraded: list[str]


def user_jobs(clients, project_id: str, user_id: str, limit: int) -> UserJobs:
    """The user's most recent jobs, at most `limit`, the latest to move first, with each tier's outcome: jobs a
    tier recorded, jobs held in reflection windows, and jobs only the producer's marker knows (on their way to the
    tiers, or refused by the topic). Without Valkey the last kind is missing, and `degraded` says so."""
    degraded: list[str] = []
    try:
        marked = job_markers.user_job_ids(clients.valkey, project_id, user_id, USER_MARKERS_READ)
    except VALKEY_ERRORS:
        marked, degraded = [], ["valkey"]
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        recent = dict(processed_jobs.recent_of_user(cur, project_id, user_id, limit))
        held_rows = held_jobs.of_user(cur, project_id, user_id, USER_HELD_READ)
        due = held_jobs.due_of_user(cur, project_id, user_id, clients.settings.reflect_window_s,
                                    clients.settings.reflect_quiet_s) if held_rows else {}
        held_ids = {row["job_id"] for row in held_rows}
        unrecorded = sorted({j for j in marked if j not in recent and j not in held_ids})
        unrecorded = sorted(set(unrecorded) - processed_jobs.recorded_of_user(cur, project_id, user_id, unrecorded))
    markers: dict[str, dict] = {}
    if unrecorded and not degraded:
        try:
            markers = job_markers.known_many(clients.valkey, project_id, unrecorded)
        except VALKEY_ERRORS:
            degraded = ["valkey"]
    # When each job last moved, as far as is known before its rows are read: the newest `limit` are kept.
    moved: dict[str, datetime] = {job_id: as_utc(at) for job_id, at in recent.items()}
    for row in held_rows:
        moved[row["job_id"]] = max(moved.get(row["job_id"], _EPOCH), as_utc(row["held_at"]))
    for job_id, marker in markers.items():
        moved.setdefault(job_id, _moment(marker.get("created_at")) or _EPOCH)
    chosen = sorted(moved, key=lambda j: (moved[j], j), reverse=True)[:limit]
    unread = [job_id for job_id in chosen if job_id not in markers]
    if unread and not degraded:  # when the others were made (and whether one is a narrative's)
        try:
            markers.update(job_markers.known_many(clients.valkey, project_id, unread))
        except VALKEY_ERRORS:
            degraded = ["valkey"]
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        rows = processed_jobs.rows_of_user_jobs(cur, project_id, user_id, chosen)
    held_by_job: dict[str, dict[str, dict]] = {}
    for row in held_rows:
        held_by_job.setdefault(row["job_id"], {})[row["tier"]] = {**row, "due_at": due.get(row["tier"])}
    found = []
    for job_id in chosen:
        recorded = {row["tier"]: row for row in rows.get(job_id, [])}
        held = held_by_job.get(job_id, {})
        marker = markers.get(job_id) or {}
        times = [as_utc(r["processed_at"]) for r in recorded.values()] + [as_utc(h["held_at"]) for h in held.values()]
        created = _moment(marker.get("created_at")) or next(
            (m for m in (_moment(h["created_at"]) for h in held.values()) if m), None)
        moments = {"created_at": created, "updated_at": max(times) if times else None}
        if NARRATIVE in recorded or marker.get("kind") == NARRATIVE:
            narrative = narrative_status(job_id, recorded.get(NARRATIVE))
            found.append(UserJob(**narrative.model_dump(), **moments))
            continue
        if not recorded and not held and marker.get("refused"):
            tiers = _refused(marker["refused"])
        else:
            tiers = _tiers(clients.settings, recorded, held)
        found.append(UserJob(job_id=job_id, status=overall([t.status for t in tiers.values()]), tiers=tiers,
                             **moments))
    found.sort(key=lambda job: (job.updated_at or job.created_at or _EPOCH, job.job_id), reverse=True)
    return UserJobs(jobs=found, degraded=degraded)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _moment(value) -> datetime | None:
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(str(value)))
    except ValueError:
        return None
