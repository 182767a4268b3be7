"""The memory API's core: every endpoint but chat (memories, search, ask, deep query, context, users, jobs,
status) and the MCP tools, over the real stores. Every operation is scoped by the API key's project."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import redis
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field, ValidationError

from reverie import answer, job_status, jobs, ledger, narrative, outbox, recall, working_memory
from reverie.errors import NotFound, ServiceUnavailable, ValidationFailed, validation_details
from reverie.llm import LLMError
from reverie.mcp_server import HttpResponse, handle_mcp, request_from_apigw_event, user_id_from_request
from reverie.models import (
    MAX_PAGE_SIZE,
    SAFE_ID_PATTERN,
    AddMemoriesRequest,
    AskRequest,
    ContextMemory,
    ContextQuery,
    DeepQueryRequest,
    JobStatus,
    ListMemoriesQuery,
    Memory,
    MemoryEvent,
    ReflectionJob,
    ScoredMemory,
    SearchRequest,
    Tier,
    TierOutcome,
    TierStatus,
    Turn,
    new_id,
    utcnow,
)
from reverie.observability import logger
from reverie.status import system_status
from reverie.store import memories, reflection, users
from reverie.store.memories import NewMemory

M = TypeVar("M", bound=BaseModel)

# How much deep query gathers from each part of the memory before it synthesises.
DEEP_FACTS = 12
DEEP_RULES = 8
DEEP_EPISODES = 8
DEEP_TIMELINE = 20
DEEP_REPLACED = 20
# A narrative cache miss queues one job, not one per poll: later misses within this window only answer 202.
NARRATIVE_PENDING_TTL_S = 300
FORGET_MARKER_PREFIX = "forget"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)


# ---------------------------------------------------------------- answers


class JobAccepted(BaseModel):
    job_id: str


class MemoryList(BaseModel):
    memories: list[Memory]


class MemoryPage(BaseModel):
    memories: list[Memory]
    next_cursor: str | None = None


class EventList(BaseModel):
    events: list[MemoryEvent]


class SearchHit(BaseModel):
    id: str
    tier: Tier
    text: str
    score: float
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    created_at: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResults(BaseModel):
    results: list[SearchHit]


class AskAnswer(BaseModel):
    answer: str
    citations: list[str] = Field(description="ids of the memories the answer used")


class DeepAnswer(AskAnswer):
    tiers_used: list[Tier]


class ContextBlock(BaseModel):
    narrative: str | None = None
    narrative_version: int | None = None
    rules: list[ContextMemory]
    memories: list[ContextMemory]
    recent_turns: list[Turn]
    tokens: int
    degraded: list[str] = Field(default_factory=list, description="engines that were unreachable, so parts are missing")


class NarrativeAnswer(BaseModel):
    narrative: str
    version: int
    generated_at: datetime
    citations: list[str]


class NarrativePending(BaseModel):
    status: Literal["generating"] = "generating"
    job_id: str | None = None


class ExportedNarrative(BaseModel):
    version: int
    text: str
    citations: list[str]
    model: str | None = None
    generated_at: datetime


class ExportedJob(BaseModel):
    job_id: str
    tier: str
    status: str
    added: int
    updated: int
    superseded: int
    reason: str | None = None
    error: str | None = None
    processed_at: datetime


class ExportedUsage(BaseModel):
    job_id: str | None = None
    job_ids: list[str] = Field(default_factory=list)
    tier: str | None = None
    purpose: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    calls: int
    created_at: datetime


class ExportedSession(BaseModel):
    session_id: str
    turns: list[Turn]


class ExportedHeldJob(BaseModel):
    """A job a tier holds in the user's reflection window, not learned yet (it carries the user's words)."""

    tier: str
    held_at: datetime
    attempts: int
    last_error: str | None = None
    job: ReflectionJob


class UserExport(BaseModel):
    user_id: str
    exported_at: datetime
    memories: list[Memory]
    events: list[MemoryEvent]
    narratives: list[ExportedNarrative]
    jobs: list[ExportedJob]
    usage: list[ExportedUsage]
    working_memory: list[ExportedSession]
    held_jobs: list[ExportedHeldJob] = Field(default_factory=list)
    truncated: list[str] = Field(default_factory=list, description="parts cut at the export's row limit")


@dataclass
class Reply:
    """An answer whose status or headers depend on the outcome (201 vs 202, 304, ETag...)."""

    status: int
    body: BaseModel | None = None
    headers: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- helpers


def parse(model: type[M], data: Any) -> M:
    """Validate input into a request model; a failure is a 400 with the fields that were wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc)
        message = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details[:3]) or "invalid request"
        raise ValidationFailed(message, details=details) from exc


def check_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not _SAFE_ID.match(user_id):
        raise ValidationFailed("user_id: must be 1-128 characters of letters, digits and . _ : @ -")
    return user_id


def _record_usage(clients, project_id: str, user_id: str, purpose: str, usage) -> None:
    try:
        with clients.db.transaction() as conn, conn.cursor() as cur:
            ledger.record(cur, project_id, user_id, None, [], [ledger.Call(purpose, usage)])
    except Exception:  # the ledger must never cost the caller an answer
        logger.exception("usage not recorded", extra={"purpose": purpose})


def _context_memory(memory: ScoredMemory) -> ContextMemory:
    return ContextMemory(id=memory.id, tier=memory.tier, text=memory.text, score=memory.score)


# ---------------------------------------------------------------- memories


def add_memories(clients, project_id: str, request: AddMemoriesRequest) -> Reply:
    """infer=true: one reflection job for the tiers to learn from (202 {job_id}); infer=false: the messages
    stored as given in the requested tier, with embeddings (201 {memories})."""
    if request.infer:
        return Reply(202, JobAccepted(job_id=_queue_reflection(clients, project_id, request)))
    return Reply(201, MemoryList(memories=_store_as_given(clients, project_id, request)))


def _queue_reflection(clients, project_id: str, request: AddMemoriesRequest) -> str:
    turns = [Turn(role=m.role, content=m.content) for m in request.messages]
    job = jobs.make_job(
        project_id=project_id, user_id=request.user_id, session_id=request.session_id, turns=turns,
        source="api", metadata=request.metadata,
    )
    # The topic, or the user's outbox when the topic refuses it (drained in order by the health probe).
    if not outbox.deliver(clients, job).saved:
        raise ServiceUnavailable("could not queue the job; try again")
    return job.job_id


def _store_as_given(clients, project_id: str, request: AddMemoriesRequest) -> list[Memory]:
    texts = list(dict.fromkeys(m.content.strip() for m in request.messages))
    try:
        embedded = clients.llm.embed(texts)
    except LLMError as exc:
        raise ServiceUnavailable("the embedding model is unavailable; try again") from exc
    ids = []
    with clients.db.transaction() as conn, conn.cursor() as cur:
        for text, vector in zip(texts, embedded.vectors, strict=True):
            memory = NewMemory(
                tier=request.tier, text=text, embedding=vector, embedding_model=clients.llm.embedding_model,
                metadata=request.metadata, session_id=request.session_id,
            )
            # An equal current memory already exists: answer with it rather than store the fact twice.
            ids.append(memories.insert(cur, project_id, request.user_id, memory)
                       or users.find_current(cur, project_id, request.user_id, request.tier, text))
    _record_usage(clients, project_id, request.user_id, "embed", embedded.usage)
    return users.get_many(clients.db, project_id, [i for i in ids if i])


def list_memories(clients, project_id: str, query: ListMemoriesQuery) -> MemoryPage:
    page, next_cursor = memories.list_page(
        clients.db, project_id, query.user_id, tier=query.tier, limit=query.limit, cursor=query.cursor,
    )
    return MemoryPage(memories=page, next_cursor=next_cursor)


def get_memory(clients, project_id: str, memory_id: str) -> Memory:
    memory = memories.get(clients.db, project_id, memory_id)
    if memory is None:
        raise NotFound("no memory with this id")
    return memory


def memory_history(clients, project_id: str, memory_id: str) -> EventList:
    """Every change of a memory; it outlives a delete (the DELETE event is the last one)."""
    events = memories.history(clients.db, project_id, memory_id)
    if not events and memories.get(clients.db, project_id, memory_id) is None:
        raise NotFound("no memory with this id")
    return EventList(events=events)


def delete_memory(clients, project_id: str, memory_id: str) -> None:
    if not memories.delete(clients.db, project_id, memory_id):
        raise NotFound("no memory with this id")


# ---------------------------------------------------------------- search, ask, deep query, context


def search(clients, project_id: str, request: SearchRequest) -> SearchResults:
    found = recall.search(
        clients, project_id, request.user_id, request.query, tiers=request.tiers, limit=request.limit,
        filters=request.filters or None, as_of=request.as_of,
    )
    return SearchResults(results=[SearchHit.model_validate(m.model_dump()) for m in found])


def ask(clients, project_id: str, request: AskRequest) -> AskAnswer:
    """Retrieve, then answer from what was retrieved; citations are only ids that were retrieved."""
    retrieved = recall.search(clients, project_id, request.user_id, request.question,
                              limit=clients.settings.recall_limit)
    text, citations = _synthesise(clients, project_id, request.user_id, "answer",
                                  answer.ask_messages(request.question, retrieved), retrieved)
    return AskAnswer(answer=text, citations=citations)


def deep_query(clients, project_id: str, request: DeepQueryRequest) -> DeepAnswer:
    """Gather from every tier, the episode timeline and the facts that were replaced, then synthesise."""
    user_id, query = request.user_id, request.query
    facts = recall.search(clients, project_id, user_id, query, tiers=[Tier.SEMANTIC], limit=DEEP_FACTS)
    rules = recall.search(clients, project_id, user_id, query, tiers=[Tier.PROCEDURAL], limit=DEEP_RULES)
    episodes = recall.search(clients, project_id, user_id, query, tiers=[Tier.EPISODIC], limit=DEEP_EPISODES)
    recent = memories.current_by_tier(clients.db, project_id, user_id, Tier.EPISODIC, DEEP_TIMELINE)
    timeline = _unique([*episodes, *recent])
    timeline.sort(key=lambda m: (m.valid_from or m.created_at, m.created_at))
    replaced = users.superseded(clients.db, project_id, user_id, limit=DEEP_REPLACED)
    sections = {
        "Facts": facts, "Preferences and rules": rules, "Timeline of episodes": timeline, "Replaced facts": replaced,
    }
    gathered = _unique([m for part in sections.values() for m in part])
    text, citations = _synthesise(clients, project_id, user_id, "deep_query",
                                  answer.deep_messages(query, sections), gathered)
    by_id = {m.id: m for m in gathered}
    tiers_used = list(dict.fromkeys(by_id[c].tier for c in citations))
    return DeepAnswer(answer=text, citations=citations, tiers_used=tiers_used)


def _unique(found: Sequence[Memory]) -> list[Memory]:
    """Each memory once, where it first appears."""
    first: dict[str, Memory] = {}
    for memory in found:
        first.setdefault(memory.id, memory)
    return list(first.values())


def _synthesise(clients, project_id: str, user_id: str, purpose: str, messages: list[dict[str, str]],
                shown: Sequence[Memory]) -> tuple[str, list[str]]:
    if not shown:
        return answer.NOTHING, []
    try:
        result = clients.llm.structured(messages, answer.Answer, purpose=purpose)
    except LLMError as exc:
        raise ServiceUnavailable("the language model is unavailable; try again") from exc
    _record_usage(clients, project_id, user_id, purpose, result.usage)
    allowed = {m.id for m in shown}
    # A model may invent or mangle ids: only memories it was actually shown can be cited.
    citations = [c for c in dict.fromkeys(result.value.citations) if c in allowed]
    return result.value.answer, citations


def context(clients, project_id: str, query: ContextQuery) -> ContextBlock:
    """The start-of-conversation block: narrative, rules, memories and recent turns within max_tokens."""
    built = recall.build_context(
        clients, project_id, query.user_id, query=query.query, session_id=query.session_id,
        max_tokens=query.max_tokens,
    )
    return ContextBlock(
        narrative=built.narrative, narrative_version=built.narrative_version,
        rules=[_context_memory(m) for m in built.rules], memories=[_context_memory(m) for m in built.memories],
        recent_turns=list(built.recent_turns), tokens=built.tokens, degraded=built.degraded,
    )


# ---------------------------------------------------------------- users: narrative, export, forget


def _pending_key(project_id: str, user_id: str) -> str:
    return f"narrative-pending:{working_memory.escape(project_id)}:{working_memory.escape(user_id)}"


def get_narrative(clients, project_id: str, user_id: str) -> Reply:
    """200 with the newest version; on a miss, 202 at once and a queued job (never generated in process)."""
    check_user_id(user_id)
    latest = narrative.latest(clients.db, project_id, user_id)
    if latest is not None:
        return Reply(200, NarrativeAnswer(
            narrative=latest["text"], version=latest["version"], generated_at=latest["generated_at"],
            citations=[str(c) for c in latest["citations"] or []],
        ))
    key = _pending_key(project_id, user_id)
    try:
        first = clients.valkey.set(key, "1", nx=True, ex=NARRATIVE_PENDING_TTL_S)
    except redis.RedisError:
        first = True  # without the guard a second job may be queued; the worker writes versions in order
    if not first:
        return Reply(202, NarrativePending())
    try:
        job = narrative.enqueue(clients, project_id, user_id, "missing")
    except (BotoCoreError, ClientError) as exc:
        _forget_keys(clients.valkey, [key])
        raise ServiceUnavailable("could not queue the narrative job; try again") from exc
    return Reply(202, NarrativePending(job_id=job.job_id))


def regenerate_narrative(clients, project_id: str, user_id: str) -> JobAccepted:
    check_user_id(user_id)
    try:
        job = narrative.enqueue(clients, project_id, user_id, "requested")
    except (BotoCoreError, ClientError) as exc:
        raise ServiceUnavailable("could not queue the narrative job; try again") from exc
    return JobAccepted(job_id=job.job_id)


def export_user(clients, project_id: str, user_id: str) -> UserExport:
    """Everything stored for the user: every memory (superseded too), events, narratives, job outcomes,
    the cost ledger, the jobs held in reflection windows and the turns still in working memory."""
    check_user_id(user_id)
    rows = users.export(clients.db, project_id, user_id)
    return UserExport(
        user_id=user_id, exported_at=utcnow(), memories=rows["memories"], events=rows["events"],
        narratives=rows["narratives"], jobs=rows["jobs"], usage=rows["usage"], held_jobs=rows["held_jobs"],
        working_memory=_working_memory(clients.valkey, project_id, user_id), truncated=rows["truncated"],
    )


def _working_memory(valkey, project_id: str, user_id: str) -> list[ExportedSession]:
    prefix = working_memory.session_key(project_id, user_id, "")
    sessions = []
    for key in sorted(valkey.scan_iter(match=working_memory.user_pattern(project_id, user_id), count=500)):
        key = key.decode() if isinstance(key, bytes) else key
        session_id = key[len(prefix):].replace("%3A", ":").replace("%25", "%")
        turns = working_memory.parse_turns(valkey.lrange(key, 0, -1))
        sessions.append(ExportedSession(session_id=session_id, turns=turns))
    return sessions


def forget_user(clients, project_id: str, user_id: str) -> JobAccepted:
    """Forget a user: tiers 2-4, events, narratives, job outcomes, held jobs and ledger rows, then tier 1 and every
    other key of theirs. The tombstone written with the rows drops their jobs still in flight when they arrive.

    Safe to repeat: a retry after a failure finishes what the first call started."""
    check_user_id(user_id)
    with clients.db.transaction() as conn, conn.cursor() as cur:
        # The reflectors' per-user locks: a reflection being written finishes first (and its rows are deleted
        # here); one that starts later waits for this commit and then finds the tombstone.
        for tier in Tier:
            reflection.lock_user_tier(cur, project_id, user_id, tier)
        counts = memories.forget_user(cur, project_id, user_id)
    try:
        counts["working_memory"] = working_memory.forget_user(clients.valkey, project_id, user_id)
        counts["job_markers"] = jobs.forget_markers(clients.valkey, project_id, user_id)
        counts["other_keys"] = _forget_keys(clients.valkey, [_pending_key(project_id, user_id)])
        job_id = new_id()
        # The outcome is kept for the status API; it names counts only, nothing of the user.
        outcome = {"forgotten_at": utcnow().isoformat(), "counts": counts}
        clients.valkey.set(_forget_key(project_id, job_id), json.dumps(outcome), ex=jobs.JOB_MARKER_TTL_S)
    except redis.RedisError as exc:
        raise ServiceUnavailable("working memory could not be cleared; repeat the request") from exc
    logger.info("user forgotten", extra={"job_id": job_id, "counts": counts})
    return JobAccepted(job_id=job_id)


def _forget_key(project_id: str, job_id: str) -> str:
    return f"{FORGET_MARKER_PREFIX}:{project_id}:{job_id}"


def _forget_keys(valkey, keys: list[str]) -> int:
    try:
        return int(valkey.delete(*keys)) if keys else 0
    except redis.RedisError:
        logger.warning("keys not deleted")
        return 0


# ---------------------------------------------------------------- jobs and status


def job(clients, project_id: str, job_id: str, if_none_match: str | None = None) -> Reply:
    """A job's status per tier, with an ETag (304 when unchanged) and Retry-After while it is still moving."""
    status = _forget_outcome(clients, project_id, job_id) or job_status.job_status(clients, project_id, job_id)
    hints = job_status.poll_hints(status)
    if hints.matches(if_none_match):
        return Reply(304, None, hints.headers())
    return Reply(200, status, hints.headers())


def _forget_outcome(clients, project_id: str, job_id: str) -> JobStatus | None:
    try:
        raw = clients.valkey.get(_forget_key(project_id, job_id))
    except redis.RedisError:
        return None
    if not raw:
        return None
    reason = "user forgotten"
    return JobStatus(job_id=job_id, status=TierStatus.DONE,
                     tiers={t: TierOutcome(status=TierStatus.DONE, reason=reason) for t in Tier})


def status(clients, project_id: str) -> dict[str, Any]:
    return system_status(clients, project_id)


# ---------------------------------------------------------------- MCP


class StoreMemoryTools:
    """The MCP tools over the real stores, bound to one project (the API key's)."""

    def __init__(self, clients, project_id: str):
        self.clients = clients
        self.project_id = project_id

    def add_memories(self, user_id: str, text: str, infer: bool = True, metadata: dict | None = None) -> dict:
        request = parse(AddMemoriesRequest, {
            "user_id": user_id, "messages": [{"role": "user", "content": text}], "infer": infer,
            "metadata": metadata or {},
        })
        return add_memories(self.clients, self.project_id, request).body.model_dump(mode="json")

    def search_memory(self, user_id: str, query: str, limit: int = 10, tiers: list[str] | None = None) -> dict:
        request = parse(SearchRequest, {"user_id": user_id, "query": query, "limit": limit, "tiers": tiers})
        return search(self.clients, self.project_id, request).model_dump(mode="json")

    def list_memories(self, user_id: str, tier: str | None = None, limit: int = 50, cursor: str | None = None) -> dict:
        query = parse(ListMemoriesQuery, {
            "user_id": user_id, "tier": tier, "limit": min(limit, MAX_PAGE_SIZE), "cursor": cursor,
        })
        return list_memories(self.clients, self.project_id, query).model_dump(mode="json")

    def delete_memories(self, user_id: str, memory_ids: list[str]) -> dict:
        check_user_id(user_id)
        deleted, not_found = [], []
        for memory_id in memory_ids:
            # DELETE by id is project-wide: a tool acting for one user may only delete that user's memories.
            memory = memories.get(self.clients.db, self.project_id, memory_id)
            if memory is None or memory.user_id != user_id or not memories.delete(
                self.clients.db, self.project_id, memory_id
            ):
                not_found.append(memory_id)
            else:
                deleted.append(memory_id)
        return {"deleted": deleted, "not_found": not_found}

    def ask_memory(self, user_id: str, question: str) -> dict:
        request = parse(AskRequest, {"user_id": user_id, "question": question})
        return ask(self.clients, self.project_id, request).model_dump(mode="json")

    def deep_memory_query(self, user_id: str, query: str) -> dict:
        request = parse(DeepQueryRequest, {"user_id": user_id, "query": query})
        return deep_query(self.clients, self.project_id, request).model_dump(mode="json")

    def get_context(self, user_id: str, session_id: str | None = None, query: str | None = None,
                    max_tokens: int | None = None) -> dict:
        data: dict[str, Any] = {"user_id": user_id, "session_id": session_id, "query": query}
        if max_tokens is not None:
            data["max_tokens"] = max_tokens
        return context(self.clients, self.project_id, parse(ContextQuery, data)).model_dump(mode="json")


def serve_mcp(clients, project_id: str, event: dict[str, Any]) -> HttpResponse:
    """One MCP streamable-HTTP request: tools bound to the key's project and the user the client names."""
    request = request_from_apigw_event(event)
    return handle_mcp(request, StoreMemoryTools(clients, project_id), user_id_from_request(request))
