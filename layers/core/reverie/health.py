"""The health probe: engines, queue depths and DLQs as metrics, so alarms see what a person would."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from reverie.observability import logger, metrics
from reverie.status import system_status


def probe(clients) -> dict[str, Any]:
    report: dict[str, Any] = {"engines": {}}
    for name, check in (("postgres", lambda: clients.db.ping()),
                        ("valkey", lambda: clients.valkey.ping())):
        try:
            check()
            report["engines"][name] = "ok"
        except Exception as exc:
            report["engines"][name] = f"down: {type(exc).__name__}"
            metrics.add_metric(name="EngineDown", unit=MetricUnit.Count, value=1)
    report.update(system_status(clients))
    deepest = max((q["queue"] or {}).get("visible", 0) for q in report["queues"].values())
    dead = sum((q["dlq"] or {}).get("visible", 0) for q in report["queues"].values())
    metrics.add_metric(name="QueueDepth", unit=MetricUnit.Count, value=deepest)
    metrics.add_metric(name="DeadLetters", unit=MetricUnit.Count, value=dead)
    metrics.add_metric(name="ReflectionStalled", unit=MetricUnit.Count, value=0)
    logger.info("health probe", extra=report)
    return report
