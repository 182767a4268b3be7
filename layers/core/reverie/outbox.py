"""The outbox: reflection jobs not yet on the topic, parked in Valkey until a drain publishes them.

Drained by the health probe (every user) and by the user's own turns, oldest first, so each user's jobs
still reach the FIFO topic in order. The chat parks every job, then drains after answering (reverie.chat);
`deliver` publishes first and parks only what the topic refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from redis.exceptions import RedisError

from reverie import jobs
from reverie.errors import InvalidJob
from reverie.metric_names import Metric
from reverie.models import ReflectionJob
from reverie.observability import logger, metrics
from reverie.store.processed_jobs import any_tier_processed
from reverie.working_memory import escape

# One hash tag for every outbox key: they share a slot, so the ack script stays valid on a cluster client.
TAG = "{outbox}"
INDEX = f"{TAG}:users"  # sorted set: user outbox key -> when its oldest job was parked

# Why claim -> publish -> remove, and what a crash in between costs.
# SNS and Valkey are two systems, so publishing a job and removing it from the outbox cannot be one atomic
# step. Removing first would lose the job if the drainer died before publishing; publishing first can at
# worst send it twice, so that is the order. Before publishing, a drainer claims the job (HSETNX of the
# claim time); a failed publish releases the claim, a successful one removes job and claim atomically
# (a script). So a claim that outlives its lease means a drainer died mid-publish, outcome unknown:
#   - claim younger than the lease: another drainer may be publishing it now; stop (and keep the order);
#   - younger than SAFE_REPUBLISH_S: republish. The dedup id is the job id, and SNS FIFO drops a
#     duplicate within its 5-minute window, so this sends nothing twice;
#   - older: SNS would no longer drop a duplicate. If any tier has recorded the job (processed_jobs), it
#     was published: remove it without publishing. Otherwise republish; the remaining case (published,
#     still waiting in a queue after 4 minutes) is applied at most once per tier by the reflectors
#     (processed_jobs, invariant 2), so it changes nothing.
CLAIM_LEASE_S = 60
SNS_DEDUP_WINDOW_S = 300
SAFE_REPUBLISH_S = SNS_DEDUP_WINDOW_S - 60  # margin for a publish that itself took a while

PUBLISH_ERRORS = (BotoCoreError, ClientError)

_ACK = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[2])
    redis.call('ZREM', KEYS[3], KEYS[1])
end
return removed
"""


def jobs_key(project_id: str, user_id: str) -> str:
    return f"{TAG}:{escape(project_id)}:{escape(user_id)}"


def claims_key(project_id: str, user_id: str) -> str:
    return jobs_key(project_id, user_id) + ":claims"


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
    dropped: int = 0  # found already published (see above), removed without publishing
    busy: bool = False  # stopped at a job another drainer holds (it publishes that one; later ones wait)


class _Claim(Enum):
    FRESH = "fresh"
    BUSY = "busy"
    TAKEN_OVER = "taken_over"
    UNKNOWN = "unknown"


# ---------------------------------------------------------------- handing over one job


def deliver(clients, job: ReflectionJob, *, writes: Callable[[Any], None] | None = None) -> Delivery:
    """Publish one job, then send `writes` (tier 1) and the job marker in one Valkey round trip; if the
    topic refuses the job, or the user already has parked jobs that must go first, park it in that same
    round trip. Never raises for an engine fault: the answer says whether the job was saved."""
    drained, blocked = 0, False
    try:
        if clients.valkey.exists(jobs_key(job.project_id, job.user_id)):
            result = drain_user(clients, job.project_id, job.user_id)
            drained, blocked = result.published, result.remaining > 0
    except RedisError:
        pass  # nothing can be parked without Valkey either; publish directly below

    published = False if blocked else publish(clients, job)
    pipe = clients.valkey.pipeline(transaction=False)
    if writes is not None:
        writes(pipe)
    jobs.remember(pipe, job)
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
        jobs.publish(clients.sns, topic, job)
    except PUBLISH_ERRORS as exc:
        logger.warning("publish failed", extra={"job_id": job.job_id, "error": f"{type(exc).__name__}: {exc}"})
        return False
    return True


def park(pipe_or_valkey, job: ReflectionJob) -> None:
    """Add a job to its user's outbox. The index entry goes first: if only it is written, a drain finds
    an empty outbox and removes the entry; the reverse order could hide a job from the health probe."""
    key = jobs_key(job.project_id, job.user_id)
    pipe_or_valkey.zadd(INDEX, {key: time.time()}, nx=True)
    pipe_or_valkey.hset(key, job.job_id, jobs.encode(job))


# ---------------------------------------------------------------- draining


def drain_user(clients, project_id: str, user_id: str, *, own_job_id: str | None = None) -> DrainResult:
    """Publish one user's parked jobs, oldest first; stop at the first that cannot go (order matters).
    `own_job_id`: the job the caller parked on its way to the topic (the chat's), not counted as drained."""
    valkey = clients.valkey
    key, claims = jobs_key(project_id, user_id), claims_key(project_id, user_id)
    parked = _parked(valkey.hgetall(key))
    if not parked:
        _ack(valkey, key, claims, "")  # only clears a stale index entry
        return DrainResult()
    published = dropped = own_published = 0
    for index, job in enumerate(parked):
        claim = _claim(valkey, claims, job.job_id)
        if claim is _Claim.BUSY:
            return DrainResult(published, len(parked) - index, dropped, busy=True)
        if claim is _Claim.UNKNOWN and _was_processed(clients, job):
            _ack(valkey, key, claims, job.job_id)
            dropped += 1
            continue
        if claim is _Claim.UNKNOWN:
            logger.warning("republishing a job whose earlier publish had an unknown outcome",
                           extra={"job_id": job.job_id})
        if not publish(clients, job):
            valkey.hdel(claims, job.job_id)
            return DrainResult(published, len(parked) - index, dropped)
        _ack(valkey, key, claims, job.job_id)
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
    for raw_key in clients.valkey.zrange(INDEX, 0, max_users - 1):
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        project_id, user_id = _scope(key)
        result = drain_user(clients, project_id, user_id)
        total = DrainResult(total.published + result.published, total.remaining + result.remaining,
                            total.dropped + result.dropped)
    return total


def stats(valkey) -> dict[str, Any]:
    """{users, jobs, oldest_age_s}: what /v1/status and the health probe report."""
    keys = valkey.zrange(INDEX, 0, -1, withscores=True)
    if not keys:
        return {"users": 0, "jobs": 0, "oldest_age_s": 0}
    pipe = valkey.pipeline(transaction=False)
    for key, _ in keys:
        pipe.hlen(key)
    counts = pipe.execute()
    oldest = min(score for _, score in keys)
    return {"users": sum(1 for c in counts if c), "jobs": sum(counts),
            "oldest_age_s": round(max(0.0, time.time() - oldest), 1)}


def pending(valkey, project_id: str, user_id: str) -> int:
    return valkey.hlen(jobs_key(project_id, user_id))


def forget_user(valkey, project_id: str, user_id: str) -> int:
    """Drop a forgotten user's parked jobs (the forget cascade covers jobs in flight). Returns keys deleted."""
    key = jobs_key(project_id, user_id)
    pipe = valkey.pipeline(transaction=False)
    pipe.delete(key, claims_key(project_id, user_id))
    pipe.zrem(INDEX, key)
    deleted, _ = pipe.execute()
    return int(deleted)


# ---------------------------------------------------------------- helpers


def _parked(raw: dict) -> list[ReflectionJob]:
    parked = []
    for job_id, body in raw.items():
        try:
            parked.append(jobs.parse_job(body))
        except InvalidJob as exc:
            # Only jobs.encode output is parked, so this means a format change: keep it, and say so loudly
            # (it still counts in the outbox depth the alarms watch).
            logger.error("unreadable parked job left in the outbox", extra={"job_id": job_id, "error": exc.message})
    return sorted(parked, key=lambda j: (j.created_at, j.job_id))


def _claim(valkey, claims: str, job_id: str) -> _Claim:
    now = time.time()
    if valkey.hsetnx(claims, job_id, now):
        return _Claim.FRESH
    raw = valkey.hget(claims, job_id)
    age = now - float(raw) if raw else 0.0
    if age < CLAIM_LEASE_S:
        return _Claim.BUSY
    valkey.hset(claims, job_id, now)
    return _Claim.TAKEN_OVER if age < SAFE_REPUBLISH_S else _Claim.UNKNOWN


def _ack(valkey, key: str, claims: str, job_id: str) -> None:
    valkey.eval(_ACK, 3, key, claims, INDEX, job_id)


def _was_processed(clients, job: ReflectionJob) -> bool:
    try:
        return any_tier_processed(clients.db, job.project_id, job.job_id)
    except Exception as exc:  # cannot check: republish rather than risk losing it
        logger.warning("could not check whether a parked job was processed", extra={"error": type(exc).__name__})
        return False


def _scope(key: str) -> tuple[str, str]:
    _, project, user = key.split(":")
    return _unescape(project), _unescape(user)


def _unescape(part: str) -> str:
    return part.replace("%3A", ":").replace("%25", "%")
