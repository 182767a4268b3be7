"""The chat turn: tier 1 plus recall, a reply, then one reflection job. Never waits for tiers 2-4.

The turn never writes Postgres: the user and assistant turns go to tier 1 (Valkey) and, inside one
self-contained job, to the reflection topic (or the outbox when the topic is unreachable).
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from reverie import idempotency, outbox, recall, working_memory
from reverie.errors import ServiceUnavailable
from reverie.jobs import make_job
from reverie.llm import LLMError
from reverie.metric_names import Metric
from reverie.models import (
    MAX_MESSAGE_BYTES,
    ChatContext,
    ChatRequest,
    ChatResponse,
    ContextMemory,
    ScoredMemory,
    Turn,
    new_id,
)
from reverie.observability import logger, metrics

# Recall lookups slower than this are left out of the reply (a hung engine must not hang the chat).
RECALL_DEADLINE_S = 3.0


def chat_turn(
    clients, project_id: str, request: ChatRequest, *, idempotency_key: str | None = None, lambda_context=None,
) -> ChatResponse:
    """Answer one message. With an Idempotency-Key, a retry gets the first answer and publishes nothing."""
    if idempotency_key is None:
        return _turn(clients, project_id, request, turn_id=new_id(), job_id=new_id())
    key = idempotency.check_key(idempotency_key)
    body = request.model_dump(mode="json")
    turn_id = idempotency.derived_id(project_id, key, body, "turn")
    job_id = idempotency.derived_id(project_id, key, body, "job")
    return idempotency.once(
        clients.valkey, project_id=project_id, user_id=request.user_id, key=key, payload=body,
        run=lambda: _turn(clients, project_id, request, turn_id=turn_id, job_id=job_id),
        model=ChatResponse, same_request=lambda first: first.job_id == job_id, lambda_context=lambda_context,
    )


def _turn(clients, project_id: str, request: ChatRequest, *, turn_id: str, job_id: str) -> ChatResponse:
    settings = clients.settings
    user_turn = Turn(turn_id=f"{turn_id}:user", role="user", content=request.message)
    context = recall.build_context(
        clients, project_id, request.user_id, query=request.message, session_id=request.session_id,
        max_tokens=settings.recall_max_tokens, deadline_s=RECALL_DEADLINE_S,
    )
    try:
        completion = clients.llm.chat(recall.messages(context, request.message), purpose="reply")
    except LLMError as exc:
        logger.error("reply failed; nothing stored", extra={"error": str(exc), "job_id": job_id})
        metrics.add_metric(name=Metric.REPLY_FAILED, unit=MetricUnit.Count, value=1)
        raise ServiceUnavailable("the chat model is unavailable; nothing was stored, retry later") from exc
    reply = completion.text
    if not reply.strip():
        metrics.add_metric(name=Metric.REPLY_FAILED, unit=MetricUnit.Count, value=1)
        raise ServiceUnavailable("the chat model returned an empty reply; nothing was stored, retry later")

    assistant_turn = Turn(turn_id=f"{turn_id}:assistant", role="assistant", content=_clip_bytes(reply))
    turns = [user_turn, assistant_turn]
    job = make_job(project_id=project_id, user_id=request.user_id, session_id=request.session_id, turns=turns,
                   metadata=request.metadata, job_id=job_id)
    delivery = outbox.deliver(clients, job, writes=lambda pipe: working_memory.append_turns(
        pipe, project_id, request.user_id, request.session_id, turns,
        settings.working_memory_max_turns, settings.working_memory_ttl_s,
    ))
    logger.info("chat turn", extra={"job_id": job.job_id, "route": delivery.route, "memories": len(context.memories),
                                    "rules": len(context.rules), "degraded": context.degraded})
    return ChatResponse(
        reply=reply, session_id=request.session_id, turn_id=turn_id, job_id=job.job_id,
        memory_saved=delivery.saved,
        context=ChatContext(memories=[_used(m) for m in context.memories], rules=[_used(m) for m in context.rules],
                            narrative=context.narrative is not None),
    )


def _used(memory: ScoredMemory) -> ContextMemory:
    return ContextMemory(id=memory.id, tier=memory.tier, text=memory.text, score=memory.score)


def _clip_bytes(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """A turn is at most 32 KB like any message; a longer reply is returned whole but stored clipped."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "…"
