"""Reflection windows: a tier holds a user's jobs across queue batches and learns them together.

Why: a FIFO batch holds at most ten messages, often of several users, so learning each batch as it comes
costs a model call per tier for every few jobs. Held in Postgres, a user's jobs are learned with one call per
tier once `reflect_window_jobs` have gathered, once the oldest has waited `reflect_window_s`, or once the user has
been quiet for `reflect_quiet_s` (the tier has held nothing new of theirs for that long: the conversation paused).
The window sweep sends the tier a close message for the last two. So a finished conversation is learned soon after
it ends, and an active one in one piece; what is said meanwhile is recalled as pending (reverie.chat.pending). A
held job is durable, so its queue message can go; it leaves the window in the transaction that applies it
(reverie.reflect.learn), and order is arrival order.

Failures: the records delivered in the invocation that closes a window fail back to the queue (SQS counts
their receives and moves them to the DLQ after the last). Jobs held by earlier invocations have no message
any more, so the window counts their failed attempts; after the same number of attempts they are parked in
the DLQ and recorded dead. Either way a window that keeps failing cannot hold a user's learning hostage.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from reverie.domain.errors import InvalidJob
from reverie.domain.fields import SAFE_ID_PATTERN, utcnow
from reverie.domain.tiers import TIERS, Tier, TierStatus
from reverie.jobs import dlq
from reverie.jobs.message import ReflectionJob, encode, message_group, parse_job
from reverie.platform.deadline import Deadline
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics
from reverie.reflect.learn import learn, user_hash
from reverie.store import ALL_PROJECTS, held_jobs, processed_jobs

CLOSE = "close_window"
# At most this many held jobs are learned per model call round; a larger backlog is learned in rounds.
MAX_JOBS_PER_ROUND = 200
_SAFE_ID = re.compile(SAFE_ID_PATTERN)


@dataclass(frozen=True)
class CloseRequest:
    """The body of a close message: learn this user's held jobs in this tier now."""

    project_id: str
    user_id: str
    tier: Tier

    @property
    def group_id(self) -> str:
        return message_group(self.project_id, self.user_id)  # the user's jobs' group: closed in order with them

    def body(self) -> str:
        return json.dumps({"kind": CLOSE, "project_id": self.project_id, "user_id": self.user_id,
                           "tier": self.tier.value})


def parse_close(data: dict) -> CloseRequest:
    project_id, user_id, tier = data.get("project_id"), data.get("user_id"), data.get("tier")
    if not all(isinstance(v, str) and _SAFE_ID.match(v) for v in (project_id, user_id)):
        raise InvalidJob("close message without a valid project_id and user_id")
    if tier not in {t.value for t in TIERS}:
        raise InvalidJob(f"close message for an unknown tier {tier!r}")
    return CloseRequest(project_id, user_id, Tier(tier))


def is_due(state: held_jobs.WindowState, settings) -> bool:
    """Full, or its oldest job has waited long enough."""
    if state.jobs == 0:
        return False
    return state.jobs >= settings.reflect_window_jobs or state.age_s >= settings.reflect_window_s


def take(clients, tier: Tier, jobs: Sequence[ReflectionJob], receive_counts: dict[str, int],
         deadline: Deadline | None = None) -> None:
    """Hold a user's delivered jobs (in order) and learn the window when it is due (within `deadline`)."""
    tier = Tier(tier)
    project_id, user_id = jobs[0].project_id, jobs[0].user_id
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        held_jobs.hold(cur, project_id, user_id, tier, [(j.job_id, j.model_dump(mode="json")) for j in jobs])
        state = held_jobs.state(cur, project_id, user_id, tier)
    if not is_due(state, clients.settings):
        logger.debug("jobs held", extra={"tier": tier.value, "user_hash": user_hash(user_id), "held": state.jobs})
        return
    close(clients, tier, project_id, user_id, receive_counts=receive_counts, deadline=deadline)


def close(clients, tier: Tier, project_id: str, user_id: str, *, receive_counts: dict[str, int] | None = None,
          deadline: Deadline | None = None) -> None:
    """Learn every job the user's window holds, oldest first, in rounds of at most MAX_JOBS_PER_ROUND; a round
    starts only with `reflect_round_s` of the deadline left (the rest stays held for the next delivery or
    sweep). On failure the outcome of each job is recorded (see the module docstring) and the error is raised."""
    while True:
        if deadline is not None and deadline.remaining() < clients.settings.reflect_round_s:
            logger.warning("window left open: not enough time left for a round", extra={
                "tier": tier.value, "user_hash": user_hash(user_id), "remaining_s": round(deadline.remaining(), 1)})
            return
        with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
            window = [parse_job(body) for body in held_jobs.window(cur, project_id, user_id, tier, MAX_JOBS_PER_ROUND)]
        if not window:
            return
        try:
            learn(clients, tier, window, deadline=deadline)
        except Exception as exc:
            record_failure(clients, tier, window, receive_counts or {}, exc)
            raise
        if len(window) < MAX_JOBS_PER_ROUND:
            return


def record_failure(clients, tier: Tier, window: Sequence[ReflectionJob], receive_counts: dict[str, int],
                   exc: Exception) -> None:
    """Each job's outcome after a failed window, in a transaction of its own (the reflection's was rolled
    back). Delivered jobs: failed, or dead on their last receive (their message goes to the DLQ, so they leave
    the window). Jobs held earlier: failed, or parked in the DLQ and dead after the last attempt."""
    limit = clients.settings.reflect_max_receive_count
    error = f"{type(exc).__name__}: {exc}"[:1000]
    project_id, user_id = window[0].project_id, window[0].user_id
    failures: dict[str, tuple[TierStatus, str, object]] = {}
    leaving: list[ReflectionJob] = []
    to_park: list[ReflectionJob] = []
    try:
        with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
            attempts = held_jobs.count_failure(cur, project_id, tier, [j.job_id for j in window], error,
                                               clients.settings.reflect_retry_after_s)
            for job in window:
                if job.job_id not in attempts:
                    continue  # no longer held: applied meanwhile by another delivery (which raced this one)
                # A delivered job's retries are its receives (SQS moves it); a job held earlier counts attempts.
                delivered = job.job_id in receive_counts
                tried, unit = (receive_counts[job.job_id], "receive") if delivered else (attempts[job.job_id],
                                                                                          "attempt")
                if tried < limit:
                    retry = "" if delivered else (
                        f"; held, and retried when the window next closes, at the earliest in "
                        f"{clients.settings.reflect_retry_after_s:.0f} s")
                    failures[job.job_id] = (TierStatus.FAILED, f"{error} ({unit} {tried} of {limit}{retry})",
                                            job.created_at)
                    continue
                (leaving if delivered else to_park).append(job)
                where = "moved to" if delivered else "parked in"
                failures[job.job_id] = (TierStatus.DEAD, f"{error} ({unit} {tried} of {limit}; {where} the "
                                                         "dead-letter queue)", job.created_at)
            # Parked first: a failed send leaves the job held (and retried), never lost.
            for job in to_park:
                dlq.park(clients, tier.value, encode(job), group_id=job.group_id,
                         dedup_key=f"held:{tier.value}:{job.job_id}")
            held_jobs.release(cur, project_id, tier, [j.job_id for j in leaving + to_park])
            processed_jobs.write_failures(cur, project_id, user_id, tier, failures)
    except Exception:
        logger.exception("could not record a reflection failure", extra={"tier": tier.value})
    dead = len(leaving) + len(to_park)
    logger.warning("reflection failed", extra={
        "tier": tier.value, "user_hash": user_hash(user_id), "jobs": len(window), "dead": dead,
        "parked": len(to_park), "error_type": type(exc).__name__,
    })
    metrics.add_metric(name=Metric.REFLECTION_FAILURES, unit=MetricUnit.Count, value=len(window))
    if dead:
        metrics.add_metric(name=Metric.DEAD_JOBS, unit=MetricUnit.Count, value=dead)


# ---------------------------------------------------------------- the sweep (EventBridge schedule)


@dataclass
class SweepResult:
    windows: int = 0
    sent: int = 0
    failed: int = 0


def sweep(clients, limit: int = 1000) -> SweepResult:
    """Send a close message to the tier queue of every window whose oldest job has waited long enough, or whose
    user has been quiet long enough. The reflector learns it in the user's order; a close that is sent twice finds
    the window empty."""
    settings = clients.settings
    with clients.db.transaction(ALL_PROJECTS) as conn, conn.cursor() as cur:  # the windows of every project
        due = held_jobs.due_windows(cur, settings.reflect_window_s, limit, quiet_s=settings.reflect_quiet_s)
    result = SweepResult(windows=len(due))
    minute = utcnow().strftime("%Y%m%d%H%M")
    for project_id, user_id, tier in due:
        request = CloseRequest(project_id, user_id, tier)
        # One close per window per minute: a sweep retried by the scheduler sends no second one.
        dedup = hashlib.sha256(f"{request.body()}:{minute}".encode()).hexdigest()
        try:
            clients.sqs.send_message(QueueUrl=settings.queue_url(tier), MessageBody=request.body(),
                                     MessageGroupId=request.group_id, MessageDeduplicationId=dedup)
            result.sent += 1
        except Exception as exc:
            result.failed += 1
            logger.warning("window close not sent; the next sweep retries", extra={
                "tier": tier.value, "user_hash": user_hash(user_id), "error": type(exc).__name__})
    if result.windows:  # quiet when there is nothing to close: it runs every minute
        logger.info("window sweep", extra={"windows": result.windows, "sent": result.sent, "failed": result.failed})
    return result
