"""Status reports. A project's (`GET /v1/status`) holds its own figures only: its users' jobs in the outbox, held
in reflection windows, failed lately, and its last write per tier; never the shared queues' depths, which mix every
tenant's jobs. The operators' (the health probe, and the admin function's `ops.status` behind `reverie status`)
holds everyone's: queue depths and oldest ages, DLQ counts, every outbox and window, and who is waiting most."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from reverie.cache import outbox
from reverie.domain.tiers import TIERS, Tier
from reverie.store import ALL_PROJECTS, held_jobs, processed_jobs

_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
# "Lately", for failed and dead jobs: a day.
FAILURES_WINDOW_S = 24 * 3600
# The operator's view lists at most this many projects with jobs waiting, the most first.
TOP_PROJECTS = 50


# ---------------------------------------------------------------- a project's own figures


class Unavailable(BaseModel):
    error: str = Field(description="The engine this part could not be read from, e.g. `unavailable: ConnectionError`.")


class OutboxFigures(BaseModel):
    users: int = Field(description="The project's users with jobs waiting in the outbox.")
    jobs: int = Field(description="Their jobs: said, not yet handed to the reflection queues.")
    oldest_age_s: float = Field(description="How long the oldest has waited, in seconds (0 when none).")


class HeldFigures(BaseModel):
    jobs: int = Field(description="The project's jobs held in this tier's reflection windows.")
    oldest_age_s: float = Field(description="How long the oldest has waited, in seconds (0 when none).")


class FailureFigures(BaseModel):
    failed: int = Field(description="Jobs whose last attempt in this tier failed (they are retried).")
    dead: int = Field(description="Jobs given up in this tier (parked in its dead-letter queue).")


class LastWrite(BaseModel):
    at: datetime
    status: str = Field(description="The outcome recorded: done, empty, failed or dead.")


class ProjectStatus(BaseModel):
    """The caller's project only: the shared queues hold every tenant's jobs, so their depths are not shown."""

    status: Literal["ok", "degraded"] = Field(description="degraded: a part could not be read; it says which.")
    project_id: str
    outbox: OutboxFigures | Unavailable
    held: dict[Tier, HeldFigures] | Unavailable = Field(description="Per tier, jobs waiting in reflection windows.")
    failed_24h: dict[Tier, FailureFigures] | Unavailable = Field(
        description="Per tier, jobs recorded failed or dead in the last 24 hours and not applied since.")
    last_write: dict[Tier, LastWrite | None] | Unavailable = Field(
        description="Per tier, when the project's last job outcome was recorded: a stalled tier shows here first.")


def project_status(clients, project_id: str) -> ProjectStatus:
    parts = {
        "outbox": _or_error(lambda: outbox.project_stats(clients.valkey, project_id)),
        "held": _or_error(lambda: project_held(clients.db, project_id)),
        "failed_24h": _or_error(lambda: processed_jobs.recent_failures(clients.db, project_id, FAILURES_WINDOW_S)),
        "last_write": _or_error(lambda: processed_jobs.last_writes(clients.db, project_id)),
    }
    degraded = any(_unavailable(part) for part in parts.values())
    return ProjectStatus(status="degraded" if degraded else "ok", project_id=project_id, **parts)


def project_held(db, project_id: str) -> dict[str, dict[str, Any]]:
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        found = held_jobs.project_totals(cur, project_id)
    return {t.value: found.get(t.value, {"jobs": 0, "oldest_age_s": 0}) for t in TIERS}


# ---------------------------------------------------------------- every project's, for operators


def queue_counts(sqs, url: str | None) -> dict[str, int] | None:
    if not url:
        return None
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=_ATTRIBUTES)["Attributes"]
    return {"visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))}


def system_status(clients) -> dict[str, Any]:
    """The shared queues and their DLQs, every outbox and every held window: the health probe's report."""
    s = clients.settings
    queues = {}
    for name in [t.value for t in TIERS] + ["narrative"]:
        queues[name] = {
            "queue": queue_counts(clients.sqs, getattr(s, f"{name}_queue_url")),
            "dlq": queue_counts(clients.sqs, getattr(s, f"{name}_dlq_url")),
        }
    answer: dict[str, Any] = {"status": "ok", "queues": queues,
                              "outbox": _or_error(lambda: outbox.stats(clients.valkey)),
                              "held": _or_error(lambda: held_windows(clients.db))}
    return answer


def operator_status(clients, top: int = TOP_PROJECTS) -> dict[str, Any]:
    """The operators' view (`reverie status`): system_status, failures of the last day and the last write per tier
    across projects, and the projects with the most jobs waiting (in the outbox or in windows). JSON as it is."""
    answer = system_status(clients)
    answer["failed_24h"] = _or_error(lambda: processed_jobs.recent_failures_all(clients.db, FAILURES_WINDOW_S))
    answer["last_write"] = _or_error(lambda: processed_jobs.last_processed_at(clients.db))
    answer["projects"] = _or_error(lambda: waiting_by_project(clients, top))
    return _jsonable(answer)


def waiting_by_project(clients, top: int) -> dict[str, dict[str, Any]]:
    """The `top` projects with the most jobs waiting: {project: {outbox: {users, jobs, oldest_age_s}, held: {jobs,
    oldest_age_s}}}, the most first."""
    parked = _or_error(lambda: outbox.by_project(clients.valkey))
    with clients.db.transaction(ALL_PROJECTS) as conn, conn.cursor() as cur:
        held = held_jobs.totals_by_project(cur, top)
    projects: dict[str, dict[str, Any]] = {}
    if not _unavailable(parked):
        for project, figures in parked.items():
            projects.setdefault(project, {})["outbox"] = figures
    for project, figures in held.items():
        projects.setdefault(project, {})["held"] = figures
    ranked = sorted(projects.items(), key=lambda item: (-sum(f["jobs"] for f in item[1].values()), item[0]))
    return {project: figures for project, figures in ranked[:top]}


def held_windows(db) -> dict[str, dict[str, Any]]:
    """Per tier: jobs held in reflection windows (all projects) and how long the oldest has waited."""
    with db.transaction(ALL_PROJECTS) as conn, conn.cursor() as cur:
        found = held_jobs.totals(cur)
    return {t.value: found.get(t.value, {"jobs": 0, "oldest_age_s": 0}) for t in TIERS}


def _or_error(read: Callable[[], Any]) -> Any:
    # A status report names the engine it could not reach instead of failing as a whole; `read` is a callable
    # because reaching for a client is already where a down engine shows (e.g. the database's schema check).
    try:
        return read()
    except Exception as exc:
        return {"error": f"unavailable: {type(exc).__name__}"}


def _unavailable(part: Any) -> bool:
    return isinstance(part, dict) and set(part) == {"error"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value.isoformat() if isinstance(value, datetime) else value
