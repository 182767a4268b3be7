"""What `GET /v1/status` and the health probe report: queue depths, oldest ages, DLQ counts, held windows."""

from __future__ import annotations

from typing import Any

from reverie.cache import outbox
from reverie.domain.tiers import TIERS
from reverie.store import held_jobs, processed_jobs

_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]


def queue_counts(sqs, url: str | None) -> dict[str, int] | None:
    if not url:
        return None
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=_ATTRIBUTES)["Attributes"]
    return {"visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))}


def system_status(clients, project_id: str | None = None) -> dict[str, Any]:
    s = clients.settings
    queues = {}
    for name in [t.value for t in TIERS] + ["narrative"]:
        queues[name] = {
            "queue": queue_counts(clients.sqs, getattr(s, f"{name}_queue_url")),
            "dlq": queue_counts(clients.sqs, getattr(s, f"{name}_dlq_url")),
        }
    answer: dict[str, Any] = {"status": "ok", "queues": queues, "outbox": _or_error(outbox.stats, clients.valkey),
                              "held": _or_error(held_windows, clients.db)}
    if project_id is not None:
        # When each tier last recorded a job outcome for this project: a stalled tier shows here first.
        answer["last_write"] = _or_error(processed_jobs.last_writes, clients.db, project_id)
    return answer


def held_windows(db) -> dict[str, dict[str, Any]]:
    """Per tier: jobs held in reflection windows (all projects) and how long the oldest has waited."""
    with db.transaction() as conn, conn.cursor() as cur:
        found = held_jobs.totals(cur)
    return {t.value: found.get(t.value, {"jobs": 0, "oldest_age_s": 0}) for t in TIERS}


def _or_error(read, *args) -> Any:
    # A status report names the engine it could not reach instead of failing as a whole.
    try:
        return read(*args)
    except Exception as exc:
        return {"error": f"unavailable: {type(exc).__name__}"}
