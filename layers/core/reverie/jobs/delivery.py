"""Handing reflection jobs to the topic: publish, or park in the user's outbox and drain it later in order.

The chat parks every job, then drains after answering (reverie.chat.turn); `deliver` publishes first and
parks only what the topic refused. The health probe drains every user's outbox, the user's own turns drain
theirs, oldest first, so each user's jobs still reach the FIFO topic in order. The claim -> publish ->
remove protocol, and what a crash in between costs, is described in reverie.cache.outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from redis.exceptions import RedisError

from reverie.cache import job_markers, outbox
from reverie.domain.errors import InvalidJob
from reverie.jobs.message import ReflectionJob, encode, parse_job
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics
from reverie.store.processed_jobs import any_tier_processed

PUBLISH_ERRORS = (BotoCoreError, ClientError)


@dataclass(frozen=True)
class Delivery:
    """Where a job went: the topic, the outbox, or nowhere (then saved is False and an alarm fires)."""

    saved: bool
    route: Literal["topic", "outbox", "none"]
    drained: int = 0


@dataclass(frozen=True)
class DrainResult:
    published: int = 0
    remaining: int = 0
    dropped: int = 0  # found already published (see reverie.cache.outbox), removed without publishing
    busy: bool = False  # stopped at a job another drainer holds (it publishes that one; later ones wait)


# ---------------------------------------------------------------- handing over one job


def deliver(clients, job: ReflectionJob, *, writes: Callable[[Any], None] | None = None) -> Delivery:
    """Publish one job, then send `writes` (tier 1) and the job marker in one Valkey round trip; if the
    topic refuses the job, or the user already has parked jobs that must go first, park it in that same
    round trip. Never raises for an engine fault: the answer says whether the job was saved."""
    drained, blocked = 0, False
    try:
        if outbox.has_parked(clients.valkey, job.project_id, job.user_id):
            result = drain_user(clients, job.project_id, job.user_id)
            drained, blocked = result.published, result.remaining > 0
    except RedisError:
        pass  # nothing can be parked without Valkey either; publish directly below

    published = False if blocked else publish(clients, job)
    pipe = clients.valkey.pipeline(transaction=False)
    if writes is not None:
        writes(pipe)
    job_markers.remember(pipe, job)
    if not published:
        park(pipe, job)
    try:
        pipe.execute()
    except RedisError as exc:
        if published:
            logger.warning("tier 1 not updated", extra={"job_id": job.job_id, "error": type(exc).__name__})
            metrics.add_metric(name=Metric.WORKING_MEMORY_NOT_UPDATED, unit=MetricUnit.Count, value=1)
            return Delivery(saved=True, route="topic", drained=drained)
        logger.error("memory not saved: neither the topic nor the outbox took the job",
                     extra={"job_id": job.job_id, "project_id": job.project_id, "error": type(exc).__name__})
        metrics.add_metric(name=Metric.MEMORY_NOT_SAVED, unit=MetricUnit.Count, value=1)
        return Delivery(saved=False, route="none", drained=drained)
    if published:
        return Delivery(saved=True, route="topic", drained=drained)
    logger.warning("job parked in the outbox", extra={"job_id": job.job_id, "behind_parked_jobs": blocked})
    metrics.add_metric(name=Metric.JOB_PARKED, unit=MetricUnit.Count, value=1)
    return Delivery(saved=True, route="outbox", drained=drained)


def publish(clients, job: ReflectionJob) -> bool:
    """Publish to the reflection topic; False (logged) when the topic cannot be reached or refuses it."""
    topic = clients.settings.reflection_topic_arn
    if not topic:
        logger.error("no reflection topic is configured (REFLECTION_TOPIC_ARN)", extra={"job_id": job.job_id})
        return False
    try:
        send(clients.sns, topic, job)
    except PUBLISH_ERRORS as exc:
        logger.warning("publish failed", extra={"job_id": job.job_id, "error": f"{type(exc).__name__}: {exc}"})
        return False
    return True


def send(sns, topic_arn: str, job: ReflectionJob) -> str:
    """One publish: group = project and user (per-user order), dedup id = job id. Raises what SNS raises."""
    response = sns.publish(TopicArn=topic_arn, Message=encode(job), MessageGroupId=job.group_id,
                           MessageDeduplicationId=job.job_id)
    return response["MessageId"]


def park(pipe_or_valkey, job: ReflectionJob) -> None:
    outbox.park(pipe_or_valkey, job.project_id, job.user_id, job.job_id, encode(job))


# ---------------------------------------------------------------- draining


def drain_user(clients, project_id: str, user_id: str, *, own_job_id: str | None = None) -> DrainResult:
    """Publish one user's parked jobs, oldest first; stop at the first that cannot go (order matters).
    `own_job_id`: the job the caller parked on its way to the topic (the chat's), not counted as drained."""
    valkey = clients.valkey
    waiting = _readable(outbox.parked(valkey, project_id, user_id))
    if not waiting:
        outbox.remove(valkey, project_id, user_id, "")  # only clears a stale index entry
        return DrainResult()
    published = dropped = own_published = 0
    for index, job in enumerate(waiting):
        claim = outbox.claim(valkey, project_id, user_id, job.job_id)
        if claim is outbox.Claim.BUSY:
            return DrainResult(published, len(waiting) - index, dropped, busy=True)
        if claim is outbox.Claim.UNKNOWN and _was_processed(clients, job):
            outbox.remove(valkey, project_id, user_id, job.job_id)
            dropped += 1
            continue
        if claim is outbox.Claim.UNKNOWN:
            logger.warning("republishing a job whose earlier publish had an unknown outcome",
                           extra={"job_id": job.job_id})
        if not publish(clients, job):
            outbox.release(valkey, project_id, user_id, job.job_id)
            return DrainResult(published, len(waiting) - index, dropped)
        outbox.remove(valkey, project_id, user_id, job.job_id)
        published += 1
        own_published += job.job_id == own_job_id
    drained = published - own_published
    if drained:
        metrics.add_metric(name=Metric.OUTBOX_DRAINED, unit=MetricUnit.Count, value=drained)
        logger.info("outbox drained", extra={"published": drained, "dropped": dropped})
    return DrainResult(published, 0, dropped)


def drain(clients, *, max_users: int = 1000) -> DrainResult:
    """Drain every user's outbox, the longest-waiting first (the health probe calls this)."""
    total = DrainResult()
    for project_id, user_id in list(outbox.owners(clients.valkey, max_users)):
        result = drain_user(clients, project_id, user_id)
        total = DrainResult(total.published + result.published, total.remaining + result.remaining,
                            total.dropped + result.dropped)
    return total


def _readable(raw: dict[str, bytes]) -> list[ReflectionJob]:
    waiting = []
    for job_id, body in raw.items():
        try:
            waiting.append(parse_job(body))
        except InvalidJob as exc:
            # Only `encode` output is parked, so this means a format change: keep it, and say so loudly
            # (it still counts in the outbox depth the alarms watch).
            logger.error("unreadable parked job left in the outbox", extra={"job_id": job_id, "error": exc.message})
    return sorted(waiting, key=lambda j: (j.created_at, j.job_id))


def _was_processed(clients, job: ReflectionJob) -> bool:
    try:
        return any_tier_processed(clients.db, job.project_id, job.job_id)
    except Exception as exc:  # cannot check: republish rather than risk losing it
        logger.warning("could not check whether a parked job was processed", extra={"error": type(exc).__name__})
        return False
