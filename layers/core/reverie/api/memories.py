"""The memory API's operations on memories: add (learned or stored as given), list, get, history, delete,
search, ask, deep query and the context block. Every operation is scoped by the API key's project."""

from __future__ import annotations

import contextlib
import time

from reverie.api.resolver import Reply
from reverie.api.schemas import (
    AddMemoriesRequest,
    AskAnswer,
    AskRequest,
    ContextBlock,
    ContextQuery,
    DeepAnswer,
    DeepQueryRequest,
    EditMemoryRequest,
    EventList,
    JobsAccepted,
    ListMemoriesQuery,
    MemoryList,
    MemoryPage,
    SearchHit,
    SearchRequest,
    SearchResults,
)
from reverie.chat import answers, recall
from reverie.chat import pending as said
from reverie.domain.errors import Conflict, NotFound, ServiceUnavailable, UserForgotten
from reverie.domain.fields import canonical_uuid, utcnow
from reverie.domain.memory import ContextMemory, Memory, ScoredMemory, Turn
from reverie.jobs import delivery
from reverie.jobs import narratives as narrative_jobs
from reverie.jobs.message import JobRefused, make_jobs
from reverie.llm import LLMError
from reverie.store import memories, tombstones
from reverie.store.memories import NewMemory


def _context_memory(memory: ScoredMemory) -> ContextMemory:
    return ContextMemory(id=memory.id, tier=memory.tier, text=memory.text, score=memory.score)


def add_memories(clients, project_id: str, request: AddMemoriesRequest) -> Reply:
    """infer=true: one reflection job for the tiers to learn from (202 {job_id}); infer=false: the messages
    stored as given in the requested tier, with embeddings (201 {memories})."""
    if request.infer:
        job_ids = _queue_reflection(clients, project_id, request)
        return Reply(202, JobsAccepted(job_id=job_ids[0], job_ids=job_ids))
    return Reply(201, MemoryList(memories=_store_as_given(clients, project_id, request)))


def _queue_reflection(clients, project_id: str, request: AddMemoriesRequest) -> list[str]:
    """As many jobs as it takes for each to fit a queue message, in order; each goes to the topic, or to the
    user's outbox when the topic cannot take it now (drained in order by the health probe)."""
    turns = [Turn(role=m.role, content=m.content) for m in request.messages]
    jobs = make_jobs(project_id=project_id, user_id=request.user_id, session_id=request.session_id, turns=turns,
                     source="api", metadata=request.metadata)
    for job in jobs:
        delivered = delivery.deliver(clients, job)
        if delivered.route == "forgotten":
            raise UserForgotten("the user was forgotten while this was being queued; nothing was kept")
        if delivered.route == "refused":
            raise JobRefused(f"the job could not be queued: {delivered.reason}")
        if not delivered.saved:
            raise ServiceUnavailable("could not queue the job; try again")
    return [job.job_id for job in jobs]


def _store_as_given(clients, project_id: str, request: AddMemoriesRequest) -> list[Memory]:
    began_at = utcnow()
    texts = list(dict.fromkeys(m.content.strip() for m in request.messages))
    try:
        embedded = clients.llm.embed(texts, timeout_s=clients.settings.answer_timeout_s)
    except LLMError as exc:
        raise ServiceUnavailable("the embedding model is unavailable; try again") from exc
    ids = []
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        # The forget's lock and tombstone: a forget that overtook this request wins, and nothing of it is kept.
        tombstones.lock_user_tier(cur, project_id, request.user_id, request.tier)
        forgotten = tombstones.forgotten_at(cur, project_id, request.user_id)
        if forgotten is not None and forgotten >= began_at:
            raise UserForgotten("the user was forgotten while this was being stored; nothing was kept")
        for text, vector in zip(texts, embedded.vectors, strict=True):
            memory = NewMemory(
                tier=request.tier, text=text, embedding=vector, embedding_model=clients.llm.embedding_model,
                metadata=request.metadata, session_id=request.session_id,
            )
            # An equal current memory already exists: answer with it rather than store the fact twice.
            ids.append(memories.insert(cur, project_id, request.user_id, memory)
                       or memories.current_id_by_text(cur, project_id, request.user_id, request.tier, text))
    answers.record_usage(clients, project_id, request.user_id, "embed", embedded.usage, began_at=began_at)
    return memories.get_many(clients.db, project_id, [i for i in ids if i])


def list_memories(clients, project_id: str, query: ListMemoriesQuery) -> MemoryPage:
    page, next_cursor = memories.list_page(
        clients.db, project_id, query.user_id, tier=query.tier, limit=query.limit, cursor=query.cursor,
        include_superseded=query.include_superseded,
    )
    return MemoryPage(memories=page, next_cursor=next_cursor)


def _known_form(memory_id: str) -> str:
    """A memory id as ids are given out; any other form (urn:uuid:..., braces) is simply not found."""
    canonical = canonical_uuid(memory_id)
    if canonical is None:
        raise NotFound("no memory with this id")
    return canonical


def get_memory(clients, project_id: str, memory_id: str) -> Memory:
    memory = memories.get(clients.db, project_id, _known_form(memory_id))
    if memory is None:
        raise NotFound("no memory with this id")
    return memory


def memory_history(clients, project_id: str, memory_id: str) -> EventList:
    """Every change of a memory; it outlives a delete (the DELETE event is the last one)."""
    memory_id = _known_form(memory_id)
    events = memories.history(clients.db, project_id, memory_id)
    if not events and memories.get(clients.db, project_id, memory_id) is None:
        raise NotFound("no memory with this id")
    return EventList(events=events)


def edit_memory(clients, project_id: str, memory_id: str, request: EditMemoryRequest) -> Memory:
    """A person's correction: the memory's new words, embedded again, in place (an UPDATE event keeps the old
    ones). 404 for no such memory; 409 for a superseded one, or words another current memory already holds."""
    began_at = utcnow()
    memory = get_memory(clients, project_id, memory_id)
    text = request.text.strip()
    if memory.superseded_at is not None:
        raise Conflict(memories.SUPERSEDED_EDIT)
    if memory.text == text:
        return memory
    try:
        embedded = clients.llm.embed([text], timeout_s=clients.settings.answer_timeout_s)
    except LLMError as exc:
        raise ServiceUnavailable("the embedding model is unavailable; try again") from exc
    memories.edit(clients.db, project_id, memory.id, text, embedding=embedded.vectors[0],
                  embedding_model=clients.llm.embedding_model)
    answers.record_usage(clients, project_id, memory.user_id, "embed", embedded.usage, began_at=began_at)
    return get_memory(clients, project_id, memory.id)


def delete_memory(clients, project_id: str, memory_id: str) -> None:
    """The memory goes, and the narratives that quote it: their hot copy is marked dropped before (so nothing read
    before the delete can fill it back) and after (reverie.cache.narratives)."""
    memory_id = _known_form(memory_id)
    memory = memories.get(clients.db, project_id, memory_id)
    if memory is None:
        raise NotFound("no memory with this id")
    began_at = time.time()
    narrative_jobs.drop(clients, project_id, memory.user_id, began_at=began_at)
    if not memories.delete(clients.db, project_id, memory_id):
        raise NotFound("no memory with this id")
    with contextlib.suppress(ServiceUnavailable):  # the first mark holds fills off meanwhile
        narrative_jobs.drop(clients, project_id, memory.user_id, began_at=began_at)


def search(clients, project_id: str, request: SearchRequest) -> SearchResults:
    found = recall.search(
        clients, project_id, request.user_id, request.query, tiers=request.tiers, limit=request.limit,
        filters=request.filters or None, as_of=request.as_of,
    )
    # What was said and is not learned yet belongs to the present, with no tier or metadata to filter by.
    present = request.as_of is None and not request.filters and not request.tiers
    pending = said.matching(clients, project_id, request.user_id, request.query, request.limit) if present else []
    return SearchResults(results=[SearchHit.model_validate(m.model_dump()) for m in found], pending=pending)


def ask(clients, project_id: str, request: AskRequest) -> AskAnswer:
    return answers.ask(clients, project_id, request.user_id, request.question)


def deep_query(clients, project_id: str, request: DeepQueryRequest) -> DeepAnswer:
    return answers.deep_query(clients, project_id, request.user_id, request.query)


def context(clients, project_id: str, query: ContextQuery) -> ContextBlock:
    """The start-of-conversation block: narrative, rules, memories, recent turns and what the user said lately
    that is not learned yet (pending), within max_tokens."""
    built = recall.build_context(
        clients, project_id, query.user_id, query=query.query, session_id=query.session_id,
        max_tokens=query.max_tokens,
    )
    return ContextBlock(
        narrative=built.narrative, narrative_version=built.narrative_version,
        rules=[_context_memory(m) for m in built.rules], memories=[_context_memory(m) for m in built.memories],
        recent_turns=list(built.recent_turns), pending=list(built.pending), tokens=built.tokens,
        degraded=built.degraded,
    )
