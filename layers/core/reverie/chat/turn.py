"""The chat turn: tier 1 plus recall, a reply, then one reflection job. Never waits for tiers 2-4. And a turn
recorded without a reply (POST /v1/turns: the caller's own model answered), saved the same way.

The turn never writes Postgres: the user and assistant turns go to tier 1 (Valkey) and, inside one
self-contained job, to the outbox; the job is published to the reflection topic after the answer is sent.
"""

from __future__ import annotations

import time
from datetime import datetime

from aws_lambda_powertools.metrics import MetricUnit
from redis.exceptions import RedisError

from reverie.cache import job_markers, outbox, pending, users, working_memory
from reverie.cache import narratives as narrative_copy
from reverie.chat import idempotency, prompt, recall
from reverie.chat.schemas import ChatContext, ChatRequest, ChatResponse, RecordTurnRequest, TurnRecorded
from reverie.domain.errors import PayloadTooLarge, ServiceUnavailable
from reverie.domain.fields import MAX_MESSAGE_BYTES, storable_text, utcnow
from reverie.domain.memory import ContextMemory, ScoredMemory, Turn
from reverie.jobs import delivery
from reverie.jobs.message import MAX_JOB_BYTES, ReflectionJob, check_fits, encode, make_job
from reverie.llm import LLMError
from reverie.platform import after_response
from reverie.platform.deadline import Deadline
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics

# Recall lookups slower than this are left out of the reply (a hung engine must not hang the chat).
RECALL_DEADLINE_S = 3.0
# API Gateway answers 504 at 30 s; the turn keeps this much of its time to save the turn and answer.
API_TIMEOUT_S = 30.0
ANSWER_RESERVE_S = 1.5
# After the answer, when another drainer (the same user's turn in another Lambda environment, or the health
# probe) holds an earlier job of this user: it publishes that one, but may have read the outbox before this
# job was parked, so wait for it a little and drain again rather than leave this job to the next drain.
BUSY_RETRIES = 5
BUSY_WAIT_S = 0.05


def chat_turn(
    clients, project_id: str, request: ChatRequest, *, idempotency_key: str | None = None, lambda_context=None,
) -> ChatResponse:
    """Answer one message within the invocation's time (the Lambda context's; API Gateway's 30 s otherwise).
    With an Idempotency-Key, a retry gets the first answer and publishes nothing."""
    deadline = Deadline.of(lambda_context, reserve_s=ANSWER_RESERVE_S, default_s=API_TIMEOUT_S)
    began_at = utcnow()  # the turn's time: a forget after it voids the turn's writes
    return idempotency.turn_once(
        clients.valkey, project_id, request, idempotency_key, model=ChatResponse, began_at=began_at,
        lambda_context=lambda_context,
        run=lambda turn_id, job_id: _turn(clients, project_id, request, turn_id=turn_id, job_id=job_id,
                                          deadline=deadline, began_at=began_at),
    )


def record_turn(
    clients, project_id: str, request: RecordTurnRequest, *, idempotency_key: str | None = None, lambda_context=None,
) -> TurnRecorded:
    """Remember a turn the caller's own model answered, as the chat remembers its own: the messages to tier 1 and
    one reflection job, saved and published as the chat's (`_save`), with no recall and no model call. With an
    Idempotency-Key, a retry gets the first answer and publishes nothing."""
    began_at = utcnow()  # as the chat's: a forget after it voids the turn's writes
    return idempotency.turn_once(
        clients.valkey, project_id, request, idempotency_key, model=TurnRecorded, began_at=began_at,
        lambda_context=lambda_context,
        run=lambda turn_id, job_id: _record(clients, project_id, request, turn_id=turn_id, job_id=job_id,
                                            began_at=began_at),
    )


def _turn(clients, project_id: str, request: ChatRequest, *, turn_id: str, job_id: str,
          deadline: Deadline, began_at: datetime) -> ChatResponse:
    settings = clients.settings
    user_turn = Turn(turn_id=f"{turn_id}:user", role="user", content=request.message, created_at=began_at)
    context = recall.build_context(
        clients, project_id, request.user_id, query=request.message, session_id=request.session_id,
        max_tokens=settings.recall_max_tokens, deadline_s=deadline.budget(RECALL_DEADLINE_S),
    )
    try:
        completion = clients.llm.chat(prompt.messages(context, request.message), purpose="reply",
                                      timeout_s=deadline.budget(settings.reply_timeout_s))
    except LLMError as exc:
        logger.error("reply failed; nothing stored", extra={"error": str(exc), "job_id": job_id})
        metrics.add_metric(name=Metric.REPLY_FAILED, unit=MetricUnit.Count, value=1)
        raise ServiceUnavailable("the chat model is unavailable; nothing was stored, retry later") from exc
    reply = storable_text(completion.text)
    if not reply.strip():
        metrics.add_metric(name=Metric.REPLY_FAILED, unit=MetricUnit.Count, value=1)
        raise ServiceUnavailable("the chat model returned an empty reply; nothing was stored, retry later")

    assistant_turn = Turn(turn_id=f"{turn_id}:assistant", role="assistant", content=_clip_bytes(reply))
    turns = [user_turn, assistant_turn]
    # Made at the turn's start: a reflector drops it if the user was forgotten after that.
    job = make_job(project_id=project_id, user_id=request.user_id, session_id=request.session_id, turns=turns,
                   metadata=request.metadata, job_id=job_id, created_at=began_at)
    delivery = _save(clients, job, no_narrative=context.narrative_absent)
    # Written after the response: the line costs the answer nothing.
    after_response.defer(_log_turn, {"job_id": job.job_id, "route": delivery.route,
                                     "memories": len(context.memories), "rules": len(context.rules),
                                     "degraded": context.degraded})
    return ChatResponse(
        reply=reply, session_id=request.session_id, turn_id=turn_id, job_id=job.job_id,
        memory_saved=delivery.saved,
        context=ChatContext(memories=[_used(m) for m in context.memories], rules=[_used(m) for m in context.rules],
                            narrative=context.narrative is not None, pending=context.pending),
    )


def _record(clients, project_id: str, request: RecordTurnRequest, *, turn_id: str, job_id: str,
            began_at: datetime) -> TurnRecorded:
    turns = [Turn(turn_id=f"{turn_id}:{i}", role=m.role, content=m.content, created_at=began_at)
             for i, m in enumerate(request.messages)]
    job = make_job(project_id=project_id, user_id=request.user_id, session_id=request.session_id, turns=turns,
                   metadata=request.metadata, job_id=job_id, created_at=began_at)
    # The chat's two turns always fit one queue message; an exchange of many long messages may not, and a job that
    # cannot travel is refused here, before anything is kept (see reverie.jobs.message).
    body = encode(job)
    if len(body) > MAX_JOB_BYTES:
        raise PayloadTooLarge(f"the messages make a job of {len(body)} bytes; one job holds at most {MAX_JOB_BYTES} "
                              "(as JSON, characters outside ASCII escaped): record the exchange in parts")
    check_fits(body, job.group_id)
    saved = _save(clients, job)
    logger.info("turn recorded", extra={"job_id": job.job_id, "route": saved.route, "messages": len(turns)})
    return TurnRecorded(turn_id=turn_id, job_id=job.job_id, memory_saved=saved.saved)


def _save(clients, job: ReflectionJob, *, no_narrative: bool = False) -> delivery.Delivery:
    """Make the turn durable before answering: one Valkey round trip appends the pair to tier 1 and what the user
    said to their pending list (recalled in any session until learned), writes the job marker and parks the job in
    the outbox; its publish is deferred past the response. Without Valkey,
    the job is published before answering; when neither takes it, the answer says so (and an alarm fires).
    `no_narrative`: recall found the user has no narrative; the same round trip marks so, and the user's next turns
    do not ask Postgres (reverie.cache.narratives)."""
    settings = clients.settings
    writes = users.UserWrites(clients.valkey, job.project_id, job.user_id, job.created_at.timestamp())
    working_memory.append_turns(writes, job.project_id, job.user_id, job.session_id, job.turns,
                                settings.working_memory_max_turns, settings.working_memory_ttl_s)
    pending.remember(writes, job, settings.pending_max_turns, settings.pending_ttl_s)
    job_markers.remember(writes, job)
    delivery.park(writes, job)
    if no_narrative:
        narrative_copy.write_none(writes, job.project_id, job.user_id)
    try:
        written = writes.execute()
    except RedisError as exc:
        # A round trip that failed midway may still have parked the job; publishing it now as well sends the
        # same job id twice at worst, which SNS FIFO and the reflectors drop (see reverie.cache.outbox).
        return _publish_now(clients, job, exc)
    if written is None:  # the user was forgotten while the reply was made: nothing of the turn is kept
        logger.info("turn of a user forgotten meanwhile not saved", extra={"job_id": job.job_id})
        return delivery.Delivery(saved=False, route="forgotten")
    after_response.defer(publish_parked, clients, job)
    return delivery.Delivery(saved=True, route="outbox")


def _publish_now(clients, job: ReflectionJob, exc: RedisError) -> delivery.Delivery:
    attempt = delivery.publish(clients, job)
    if attempt.outcome is delivery.Published.YES:
        logger.warning("tier 1 not updated", extra={"job_id": job.job_id, "error": type(exc).__name__})
        metrics.add_metric(name=Metric.WORKING_MEMORY_NOT_UPDATED, unit=MetricUnit.Count, value=1)
        return delivery.Delivery(saved=True, route="topic")
    if attempt.outcome is delivery.Published.REFUSED:
        logger.error("job refused by the topic; it is failed", extra={"job_id": job.job_id, "reason": attempt.reason})
        metrics.add_metric(name=Metric.JOBS_REFUSED, unit=MetricUnit.Count, value=1)
        return delivery.Delivery(saved=False, route="refused", reason=attempt.reason)
    logger.error("memory not saved: neither the topic nor the outbox took the job",
                 extra={"job_id": job.job_id, "project_id": job.project_id, "error": type(exc).__name__})
    metrics.add_metric(name=Metric.MEMORY_NOT_SAVED, unit=MetricUnit.Count, value=1)
    return delivery.Delivery(saved=False, route="none")


def publish_parked(clients, job: ReflectionJob) -> None:
    """After the response: drain the user's outbox, this job included, oldest first (claim, publish, remove;
    see reverie.cache.outbox). A job that cannot go stays parked for the health probe or the user's next turn."""
    try:
        for attempt in range(BUSY_RETRIES + 1):
            result = delivery.drain_user(clients, job.project_id, job.user_id, own_job_id=job.job_id)
            if not result.busy or attempt == BUSY_RETRIES:
                break
            time.sleep(BUSY_WAIT_S)
        still_parked = result.remaining > 0 and outbox.is_parked(clients.valkey, job.project_id, job.user_id,
                                                                 job.job_id)
    except RedisError as exc:
        logger.warning("job left in the outbox: Valkey failed after the response",
                       extra={"job_id": job.job_id, "error": type(exc).__name__})
        return
    if not still_parked:
        return
    logger.warning("job parked in the outbox", extra={"job_id": job.job_id, "behind_another_drainer": result.busy})
    if not result.busy:  # it (or an earlier job of the user) could not go for now
        metrics.add_metric(name=Metric.JOB_PARKED, unit=MetricUnit.Count, value=1)


def _log_turn(fields: dict) -> None:
    logger.info("chat turn", extra=fields)


def _used(memory: ScoredMemory) -> ContextMemory:
    return ContextMemory(id=memory.id, tier=memory.tier, text=memory.text, score=memory.score)



def _clip_bytes(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """A turn is at most 32 KB like any message; a longer reply is returned whole but stored clipped."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "…"
