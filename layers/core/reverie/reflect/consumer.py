"""A tier's SQS FIFO batch: records grouped by user, each user's jobs held in the reflection window (and learned
when it is due), close messages from the window sweep, poison messages refused.

Why per group and not per record: the jobs of one user are learned together (reverie.reflect.window), so the
work unit is the group. The first record of a group handles the whole group; its later records just return.
If that fails, the first record raises and `skip_group_on_error` fails every later record of the same group
without calling us, so the group's jobs come back together and in order, while other users' groups in the
batch carry on. A redelivery skips whatever was committed before (held or processed), so partial progress
from an earlier invocation is never applied twice.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from reverie.domain.errors import InvalidJob
from reverie.domain.fields import SAFE_ID_PATTERN
from reverie.domain.tiers import Tier
from reverie.jobs import dlq
from reverie.jobs.message import ReflectionJob, parse_job
from reverie.platform.deadline import Deadline
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics
from reverie.reflect import (
    offline_skills,  # noqa: F401  (registers the offline model's reflection skills)
    window,
)
from reverie.reflect.learn import user_hash
from reverie.store import processed_jobs

_SAFE_ID = re.compile(SAFE_ID_PATTERN)
# What an invocation keeps of its time for the batch response and its logs.
ANSWER_RESERVE_S = 5.0


def handle_batch(tier: Tier, event: dict[str, Any], context: Any, clients) -> dict[str, Any]:
    """The reflector functions' entry point: a Lambda SQS event in, a partial batch response out."""
    deadline = Deadline.of(context, reserve_s=ANSWER_RESERVE_S)
    reflector = BatchReflector(Tier(tier), clients, event.get("Records") or [], deadline)
    # skip_group_on_error: one user's failure holds back only that user's later jobs (see the module docstring).
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    return process_partial_response(event=event, record_handler=reflector.handle_record, processor=processor,
                                    context=context)


@dataclass
class Delivery:
    message_id: str
    group_id: str
    receive_count: int
    body: str
    job: ReflectionJob | None = None
    close: window.CloseRequest | None = None
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
        data = json.loads(delivery.body)
        if isinstance(data, dict) and data.get("kind") == window.CLOSE:
            delivery.close = window.parse_close(data)
        else:
            delivery.job = parse_job(data)
    except json.JSONDecodeError as exc:
        delivery.refusal = f"job is not JSON: {exc.msg}"
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
    def __init__(self, tier: Tier, clients, records: list[dict[str, Any]], deadline: Deadline | None = None):
        self.tier = Tier(tier)
        self.clients = clients
        self.deadline = deadline
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
            return  # handled with the group's first record
        group = self.groups[group_id]
        receive_counts = {d.job.job_id: d.receive_count for d in group if d.job is not None}
        for batch in user_batches(group):
            window.take(self.clients, self.tier, [d.job for d in batch], receive_counts, self.deadline)
        for request in {d.close for d in group if d.close is not None}:
            self.close(request)
        self.finished.add(group_id)

    def close(self, request: window.CloseRequest) -> None:
        """A close message from the window sweep. Its failure is recorded on the held jobs (which count their
        attempts) and not raised: the next sweep is the retry, and a close message never lands in the DLQ."""
        if request.tier != self.tier:
            logger.error("close message for another tier ignored", extra={"tier": self.tier.value,
                                                                          "for_tier": request.tier.value})
            return
        try:
            window.close(self.clients, self.tier, request.project_id, request.user_id, deadline=self.deadline)
        except Exception as exc:
            logger.warning("window not closed; the next sweep retries", extra={
                "tier": self.tier.value, "user_hash": user_hash(request.user_id), "error_type": type(exc).__name__})

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
            with self.clients.db.transaction(project_id) as conn, conn.cursor() as cur:
                processed_jobs.write_refusal(cur, project_id, user_id, self.tier, job_id, reason)
        self.park(delivery, reason)

    def park(self, delivery: Delivery, reason: str) -> None:
        if not self.clients.settings.dlq_url(self.tier):
            logger.error("no dead-letter queue configured; a refused job is only logged",
                         extra={"tier": self.tier.value, "message_id": delivery.message_id})
            return
        # A failed send raises: the message is retried rather than lost. Keyed by the message, so a second
        # refusal of a redelivery is deduplicated by SQS.
        dlq.park(self.clients, self.tier.value, delivery.body, group_id=delivery.group_id,
                 dedup_key=f"refused:{delivery.message_id}", reason=reason)
