"""The health probe: engines, queue depths and DLQs as metrics, so alarms see what a person would; and the
outbox drain, which publishes the jobs the topic refused earlier."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from reverie.cache import outbox
from reverie.jobs import delivery
from reverie.ops.stalls import find_stalls
from reverie.ops.status import system_status
from reverie.platform.deadline import Deadline
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics
from reverie.store.processed_jobs import last_processed_at


def probe(clients, deadline: Deadline | None = None) -> dict[str, Any]:
    """Check everything, drain the outbox within `deadline` (less what the rest of the probe needs)."""
    report: dict[str, Any] = {"engines": {}}
    for name, check in (("postgres", lambda: clients.db.ping()),
                        ("valkey", lambda: clients.valkey.ping())):
        try:
            check()
            report["engines"][name] = "ok"
        except Exception as exc:
            report["engines"][name] = f"down: {type(exc).__name__}"
            metrics.add_metric(name=Metric.ENGINE_DOWN, unit=MetricUnit.Count, value=1)
    if report["engines"]["valkey"] == "ok":
        drain_by = Deadline(deadline.at - delivery.DRAIN_MARGIN_S) if deadline is not None else None
        report["outbox_drain"] = drain_outbox(clients, drain_by)
    report.update(system_status(clients))
    deepest = max((q["queue"] or {}).get("visible", 0) for q in report["queues"].values())
    dead = sum((q["dlq"] or {}).get("visible", 0) for q in report["queues"].values())
    metrics.add_metric(name=Metric.QUEUE_DEPTH, unit=MetricUnit.Count, value=deepest)
    metrics.add_metric(name=Metric.DEAD_LETTERS, unit=MetricUnit.Count, value=dead)
    held = report.get("held") or {}
    if "error" not in held:
        oldest = max((h["oldest_age_s"] for h in held.values()), default=0)
        overdue = max(0.0, oldest - clients.settings.reflect_window_s)
        metrics.add_metric(name=Metric.HELD_OVERDUE, unit=MetricUnit.Seconds, value=overdue)
    stalled = check_stalls(clients, report)
    if stalled is not None:
        metrics.add_metric(name=Metric.REFLECTION_STALLED, unit=MetricUnit.Count, value=stalled)
    logger.info("health probe", extra=report)
    return report


def drain_outbox(clients, deadline: Deadline | None = None) -> dict[str, Any]:
    """Publish parked jobs until `deadline`, then report what is left as metrics (an outbox that does not empty
    alarms)."""
    try:
        result = delivery.drain(clients, deadline=deadline)
        left = outbox.stats(clients.valkey)
    except Exception as exc:  # a failed drain must not cost the rest of the probe
        logger.error("outbox drain failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return {"error": type(exc).__name__}
    metrics.add_metric(name=Metric.OUTBOX_DEPTH, unit=MetricUnit.Count, value=left["jobs"])
    metrics.add_metric(name=Metric.OUTBOX_OLDEST_AGE, unit=MetricUnit.Seconds, value=left["oldest_age_s"])
    return {"published": result.published, "dropped": result.dropped, "refused": result.refused,
            "remaining": left["jobs"], "users_left": result.users_left, "oldest_age_s": left["oldest_age_s"]}


def check_stalls(clients, report: dict[str, Any]) -> int | None:
    """How many tiers are stalled, or None when the engines needed to tell are down (then no metric is sent,
    and the alarm, which treats missing data as breaching, fires on its own)."""
    try:
        stalls = find_stalls(clients.valkey, report["queues"], last_processed_at(clients.db),
                             stall_after_s=clients.settings.stall_after_s)
    except Exception as exc:
        logger.error("stall check failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return None
    report["stalls"] = stalls
    stalled = [tier for tier, s in stalls.items() if s["stalled"]]
    if stalled:
        logger.error("reflection stalled", extra={"tiers": stalled})
    return len(stalled)
