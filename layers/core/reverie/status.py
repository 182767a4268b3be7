"""What `GET /v1/status` and the health probe report: queue depths, oldest ages, DLQ counts."""

from __future__ import annotations

from typing import Any

from reverie.models import TIERS

_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]


def queue_counts(sqs, url: str | None) -> dict[str, int] | None:
    if not url:
        return None
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=_ATTRIBUTES)["Attributes"]
    return {"visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
            "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))}


def system_status(clients) -> dict[str, Any]:
    s = clients.settings
    queues = {}
    for name in [t.value for t in TIERS] + ["narrative"]:
        queues[name] = {
            "queue": queue_counts(clients.sqs, getattr(s, f"{name}_queue_url")),
            "dlq": queue_counts(clients.sqs, getattr(s, f"{name}_dlq_url")),
        }
    return {"status": "ok", "queues": queues}
