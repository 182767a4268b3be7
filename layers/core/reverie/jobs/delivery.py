"""Handing reflection jobs to the topic: publish, or park in the user's outbox and drain it later in order.

The chat parks every job, then drains after answering (reverie.chat.turn); `deliver` publishes first and
parks only what could not go. The health probe drains every user's outbox, the user's own turns drain
theirs, oldest first, so each user's jobs still reach the FIFO topic in order. The claim -> publish ->
remove protocol, and what a crash in between costs, is described in reverie.cache.outbox.

A publish that fails can fail for now (the topic unreachable, throttled, a 5xx): the job waits and is tried
again. Or for good (the job too large, a group id or a character the topic refuses): retrying cannot help,
so the job is failed, with the reason in its status, a metric and an alarm, and it leaves the outbox, so
the user's later jobs are not stuck behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from redis.exceptions import RedisError

from reverie.cache import job_markers, outbox, pending, users
from reverie.domain.errors import InvalidJob
from reverie.jobs.message import JobRefused, ReflectionJob, check_fits, encode, parse_job
from reverie.platform.deadline import Deadline
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics
from reverie.store.processed_jobs import any_tier_processed

PUBLISH_ERRORS = (BotoCoreError, ClientError)
# SNS error codes that mean the request itself is wrong: sending it again is refused again.
REFUSALS = frozenset({"InvalidParameter", "InvalidParameterValue", "InvalidParameterException", "ValidationError",
                      "ValidationException"})
# The health probe's drain keeps this much of its budget for the rest of the probe.
DRAIN_MARGIN_S = 5.0


class Published(Enum):
    YES = "yes"
    LATER = "later"  # not now: it waits in the outbox
    REFUSED = "refused"  # never: the job is failed


@dataclass(frozen=True)
class Attempt:
    """One publish: its outcome, and for a refusal why."""

    outcome: Published
    reason: str | None = None


@dataclass(frozen=True)
class Delivery:
    """Where a job went: the topic, the outbox, or nowhere (then saved is False and an alarm fires)."""

    saved: bool
    route: Literal["topic", "outbox", "none", "refused", "forgotten"]
    drained: int = 0
    reason: str | None = None  # why the topic refused it


@dataclass(frozen=True)
class DrainResult:
    published: int = 0
    remaining: int = 0
    dropped: int = 0  # found already published (see reverie.cache.outbox), removed without publishing
    busy: bool = False  # stopped at a job another drainer holds (it publishes that one; later ones wait)
    refused: int = 0  # failed for good and removed (see the module docstring)
    users_left: int = 0  # users not drained because the time budget ran out (the next drain takes them)


# ---------------------------------------------------------------- handing over one job


def deliver(clients, job: ReflectionJob, *, writes: Callable[[Any], None] | None = None) -> Delivery:
    """Publish one job, then send `writes` (tier 1), the user's turns to their pending list (recalled until
    learned, reverie.cache.pending) and the job marker in one Valkey round trip; if the topic refuses the job, or
    the user already has parked jobs that must go first, park it in that same round trip. Never raises for an
    engine fault: the answer says whether the job was saved."""
    drained, blocked = 0, False
    try:
        if outbox.has_parked(clients.valkey, job.project_id, job.user_id):
            result = drain_user(clients, job.project_id, job.user_id)
            drained, blocked = result.published, result.remaining > 0
    except RedisError:
        pass  # nothing can be parked without Valkey either; publish directly below

    attempt = Attempt(Published.LATER) if blocked else publish(clients, job)
    outcome = attempt.outcome
    published = outcome is Published.YES
    pipe = users.UserWrites(clients.valkey, job.project_id, job.user_id, job.created_at.timestamp())
    if writes is not None:
        writes(pipe)
    if outcome is not Published.REFUSED:  # a refused job will never be learned, nor recalled as on its way
        pending.remember(pipe, job, clients.settings.pending_max_turns, clients.settings.pending_ttl_s)
    job_markers.remember(pipe, job)
    if outcome is Published.LATER:
        park(pipe, job)
    try:
        written = pipe.execute()
    except RedisError as exc:
        if published:
            logger.warning("tier 1 not updated", extra={"job_id": job.job_id, "error": type(exc).__name__})
            metrics.add_metric(name=Metric.WORKING_MEMORY_NOT_UPDATED, unit=MetricUnit.Count, value=1)
            return Delivery(saved=True, route="topic", drained=drained)
        logger.error("memory not saved: neither the topic nor the outbox took the job",
                     extra={"job_id": job.job_id, "project_id": job.project_id, "error": type(exc).__name__})
        metrics.add_metric(name=Metric.MEMORY_NOT_SAVED, unit=MetricUnit.Count, value=1)
        return Delivery(saved=False, route="none", drained=drained)
    if written is None:  # the user was forgotten after the job was made (a published one is dropped on arrival)
        return Delivery(saved=False, route="forgotten", drained=drained)
    if published:
        return Delivery(saved=True, route="topic", drained=drained)
    if outcome is Published.REFUSED:
        refused(clients, job, attempt.reason or "")
        return Delivery(saved=False, route="refused", drained=drained, reason=attempt.reason)
    logger.warning("job parked in the outbox", extra={"job_id": job.job_id, "behind_parked_jobs": blocked})
    metrics.add_metric(name=Metric.JOB_PARKED, unit=MetricUnit.Count, value=1)
    return Delivery(saved=True, route="outbox", drained=drained)


def publish(clients, job: ReflectionJob) -> Attempt:
    """Publish to the reflection topic: YES, LATER (logged; not configured, unreachable, a retryable error) or
    REFUSED with the reason (never: see the module docstring)."""
    topic = clients.settings.reflection_topic_arn
    if not topic:
        logger.error("no reflection topic is configured (REFLECTION_TOPIC_ARN)", extra={"job_id": job.job_id})
        return Attempt(Published.LATER)
    try:
        send(clients.sns, topic, job)
    except JobRefused as exc:
        return Attempt(Published.REFUSED, exc.message)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in REFUSALS:
            return Attempt(Published.REFUSED, f"the topic refused the job: {error.get('Code')}: {error.get('Message')}")
        logger.warning("publish failed", extra={"job_id": job.job_id, "error": f"{type(exc).__name__}: {exc}"})
        return Attempt(Published.LATER)
    except BotoCoreError as exc:
        logger.warning("publish failed", extra={"job_id": job.job_id, "error": f"{type(exc).__name__}: {exc}"})
        return Attempt(Published.LATER)
    return Attempt(Published.YES)


def send(sns, topic_arn: str, job: ReflectionJob) -> str:
    """One publish: group = the user (per-user order), dedup id = job id. Raises JobRefused for what SNS would
    refuse (checked here too, since the local stand-in accepts more), else what SNS raises."""
    body = encode(job)
    check_fits(body, job.group_id)
    response = sns.publish(TopicArn=topic_arn, Message=body, MessageGroupId=job.group_id,
                           MessageDeduplicationId=job.job_id)
    return response["MessageId"]


def refused(clients, job: ReflectionJob, reason: str) -> None:
    """Record a refused job as failed, with its reason, where its status looks (its marker); count it."""
    logger.error("job refused by the topic; it is failed", extra={"job_id": job.job_id, "reason": reason})
    metrics.add_metric(name=Metric.JOBS_REFUSED, unit=MetricUnit.Count, value=1)
    job_markers.mark_refused(clients.valkey, job.project_id, job.job_id, reason)


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
    published = dropped = own_published = refusals = 0
    for index, job in enumerate(waiting):
        claim = outbox.claim(valkey, project_id, user_id, job.job_id)
        if claim is outbox.Claim.BUSY:
            return DrainResult(published, len(waiting) - index, dropped, busy=True, refused=refusals)
        if claim is outbox.Claim.UNKNOWN and _was_processed(clients, job):
            outbox.remove(valkey, project_id, user_id, job.job_id)
            dropped += 1
            continue
        if claim is outbox.Claim.UNKNOWN:
            logger.warning("republishing a job whose earlier publish had an unknown outcome",
                           extra={"job_id": job.job_id})
        attempt = publish(clients, job)
        if attempt.outcome is Published.LATER:
            outbox.release(valkey, project_id, user_id, job.job_id)
            return DrainResult(published, len(waiting) - index, dropped, refused=refusals)
        if attempt.outcome is Published.REFUSED:
            refused(clients, job, attempt.reason or "")
            refusals += 1
        else:
            published += 1
            own_published += job.job_id == own_job_id
        outbox.remove(valkey, project_id, user_id, job.job_id)
    drained = published - own_published
    if drained:
        metrics.add_metric(name=Metric.OUTBOX_DRAINED, unit=MetricUnit.Count, value=drained)
        logger.info("outbox drained", extra={"published": drained, "dropped": dropped})
    return DrainResult(published, 0, dropped, refused=refusals)


def drain(clients, *, max_users: int = 1000, deadline: Deadline | None = None) -> DrainResult:
    """Drain every user's outbox, the longest-waiting first (the health probe calls this), until the deadline:
    a user whose jobs cannot go costs only their own attempt, and the rest wait for the next drain."""
    total = DrainResult()
    owners = list(outbox.owners(clients.valkey, max_users))
    for done, (project_id, user_id) in enumerate(owners):
        if deadline is not None and deadline.expired():
            logger.warning("outbox drain stopped at its time budget", extra={"users_left": len(owners) - done})
            return DrainResult(total.published, total.remaining, total.dropped, refused=total.refused,
                               users_left=len(owners) - done)
        result = drain_user(clients, project_id, user_id)
        total = DrainResult(total.published + result.published, total.remaining + result.remaining,
                            total.dropped + result.dropped, refused=total.refused + result.refused)
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
