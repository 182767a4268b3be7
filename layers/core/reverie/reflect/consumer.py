"""A tier's SQS FIFO batch: records grouped by user, each user's jobs reflected together, failures recorded.

Why per group and not per record: the jobs of one user in a batch are learned with one model call per tier
(and one embedding call), so the work unit is the group. The first record of a group runs the whole
group's reflection (one transaction); the group's later records just return. If it fails, that first record
raises and `skip_group_on_error` fails every later record of the same group without calling us, so the
group's jobs come back together and in order, while other users' groups in the batch carry on. A group is
all-or-nothing; a redelivery skips whatever was committed before (processed_jobs), so partial progress from
an earlier invocation (say, a timeout after some groups committed) is never applied twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from reverie.errors import InvalidJob
from reverie.jobs import parse_job
from reverie.metric_names import Metric
from reverie.models import SAFE_ID_PATTERN, ReflectionJob, Tier, TierStatus
from reverie.observability import logger, metrics
from reverie.reflect.learn import learn, user_hash
from reverie.store import reflection as outcomes_table

_SAFE_ID = re.compile(SAFE_ID_PATTERN)


@dataclass
class Delivery:
    message_id: str
    group_id: str
    receive_count: int
    body: str
    job: ReflectionJob | None = None
    refusal: str | None = None


def read_record(record: dict[str, Any]) -> Delivery:
    attributes = record.get("attributes") or {}
    delivery = Delivery(
        message_id=record.get("messageId", ""),
        group_id=attributes.get("MessageGroupId") or "",
        receive_count=int(attributes.get("ApproximateReceiveCount") or 1),
        body=record.get("body") or "",
    )
    try:
        delivery.job = parse_job(delivery.body)
    except InvalidJob as exc:
        delivery.refusal = exc.message
    return delivery


def group_deliveries(deliveries: list[Delivery]) -> dict[str, list[Delivery]]:
    """Deliveries by message group, in batch order (FIFO order within a group)."""
    groups: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        groups[d.group_id or (d.job.group_id if d.job else d.message_id)].append(d)
    return dict(groups)


def user_batches(deliveries: list[Delivery]) -> list[list[Delivery]]:
    """A group's valid deliveries split by (project, user), in order. A group is one user by construction
    (group id = project:user); splitting anyway means no prompt ever mixes two users' words."""
    batches: dict[tuple[str, str], list[Delivery]] = {}
    for d in deliveries:
        if d.job is not None:
            batches.setdefault((d.job.project_id, d.job.user_id), []).append(d)
    return list(batches.values())


def scope_of(body: str) -> tuple[str, str, str | None] | None:
    """(project_id, job_id, user_id) of a refused body, when those it has are well-formed ids."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    project_id, job_id, user_id = data.get("project_id"), data.get("job_id"), data.get("user_id")
    if not all(isinstance(v, str) and _SAFE_ID.match(v) for v in (project_id, job_id)):
        return None
    return project_id, job_id, user_id if isinstance(user_id, str) and _SAFE_ID.match(user_id) else None


class BatchReflector:
    def __init__(self, tier: Tier, clients, records: list[dict[str, Any]]):
        self.tier = Tier(tier)
        self.clients = clients
        self.deliveries = {d.message_id: d for d in map(read_record, records)}
        self.groups = group_deliveries(list(self.deliveries.values()))
        self.group_of = {d.message_id: gid for gid, ds in self.groups.items() for d in ds}
        self.finished: set[str] = set()

    def handle_record(self, record: SQSRecord) -> None:
        delivery = self.deliveries[record.message_id]
        if delivery.refusal is not None:
            self.refuse(delivery)
            return
        group_id = self.group_of[delivery.message_id]
        if group_id in self.finished:
            return  # learned with the group's first record
        for batch in user_batches(self.groups[group_id]):
            try:
                learn(self.clients, self.tier, [d.job for d in batch])
            except Exception as exc:
                self.record_failure(batch, exc)
                raise
        self.finished.add(group_id)

    def record_failure(self, batch: list[Delivery], exc: Exception) -> None:
        """Record `failed` with the error, or `dead` when this was the last receive before the DLQ, in a
        transaction of its own (the reflection's was rolled back). Never replaces a done or empty outcome."""
        limit = self.clients.settings.reflect_max_receive_count
        error = f"{type(exc).__name__}: {exc}"[:1000]
        failures = {}
        for d in batch:
            if d.receive_count >= limit:
                failures[d.job.job_id] = (TierStatus.DEAD, f"{error} (receive {d.receive_count} of {limit}; "
                                                           "moved to the dead-letter queue)", d.job.created_at)
            else:
                failures[d.job.job_id] = (TierStatus.FAILED, f"{error} (receive {d.receive_count} of {limit})",
                                          d.job.created_at)
        dead = sum(1 for status, _, _ in failures.values() if status == TierStatus.DEAD)
        job = batch[0].job
        logger.warning("reflection failed", extra={
            "tier": self.tier.value, "user_hash": user_hash(job.user_id), "jobs": len(batch), "dead": dead,
            "error_type": type(exc).__name__, "receive_count": batch[0].receive_count,
        })
        metrics.add_metric(name=Metric.REFLECTION_FAILURES, unit=MetricUnit.Count, value=len(batch))
        if dead:
            metrics.add_metric(name=Metric.DEAD_JOBS, unit=MetricUnit.Count, value=dead)
        try:
            with self.clients.db.transaction() as conn, conn.cursor() as cur:
                outcomes_table.write_failures(cur, job.project_id, job.user_id, self.tier, failures)
        except Exception:
            logger.exception("could not record a reflection failure", extra={"tier": self.tier.value})

    def refuse(self, delivery: Delivery) -> None:
        """A poison message (not JSON, wrong schema, no project or user) is refused at once and not retried:
        retrying cannot fix it, and holding it would block the user's later jobs for five visibility
        timeouts. It is never reflected, so nothing is stored unscoped. Three traces are left: an error log
        and a metric with the reason; a `failed` outcome with the reason when the body names a project and a
        job (so the job status shows it); and the message itself, parked in the tier's DLQ with the reason,
        for `reverie dlq show` and the DLQ alarm."""
        reason = delivery.refusal or "unreadable job"
        logger.error("poison job refused", extra={"tier": self.tier.value, "reason": reason[:500],
                                                  "message_id": delivery.message_id})
        metrics.add_metric(name=Metric.POISON_JOBS, unit=MetricUnit.Count, value=1)
        scope = scope_of(delivery.body)
        if scope is not None:
            project_id, job_id, user_id = scope
            with self.clients.db.transaction() as conn, conn.cursor() as cur:
                outcomes_table.write_refusal(cur, project_id, user_id, self.tier, job_id, reason)
        self.park(delivery, reason)

    def park(self, delivery: Delivery, reason: str) -> None:
        dlq_url = self.clients.settings.dlq_url(self.tier)
        if not dlq_url:
            logger.error("no dead-letter queue configured; a refused job is only logged",
                         extra={"tier": self.tier.value, "message_id": delivery.message_id})
            return
        # A failed send raises: the message is retried rather than lost.
        self.clients.sqs.send_message(
            QueueUrl=dlq_url, MessageBody=delivery.body or "(empty)",
            MessageGroupId=delivery.group_id or "refused",
            # Stable for this message: a second refusal of a redelivery is deduplicated by SQS.
            MessageDeduplicationId="refused-" + hashlib.sha256(delivery.message_id.encode()).hexdigest()[:64],
            MessageAttributes={"refused_reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )
