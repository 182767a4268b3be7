"""Recall: hybrid search over the long-term tiers, and the context a reply is built from (narrative, rules,
memories, recent turns), looked up at once and fitted into its budget (reverie.chat.context)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from reverie.cache import VALKEY_ERRORS, recall_reads
from reverie.cache import narratives as hot_copy
from reverie.chat import pending as said
from reverie.chat.context import RecallContext, fit
from reverie.domain.memory import ScoredMemory
from reverie.domain.tiers import Tier
from reverie.jobs import narratives as narrative_jobs
from reverie.llm import LLMError
from reverie.platform import after_response
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics
from reverie.store import memories, memory_search
from reverie.store import recall_reads as pg_reads

RULES_LIMIT = 20
SEARCH_TIERS: tuple[Tier, ...] = (Tier.EPISODIC, Tier.SEMANTIC)
CANDIDATES = 50  # taken from each half of a hybrid search before they are blended
# The vector list's share of a blended score, by embedding model, measured with bench/locomo.py (tuned on one
# conversation, reported on another): hashed embeddings know words, not meanings, so BM25 carries more of the
# search. A model not measured gets an even share; SEARCH_VECTOR_WEIGHT sets it.
MODEL_VECTOR_WEIGHT = {"offline-hash-embed-v1": 0.2}
DEFAULT_VECTOR_WEIGHT = 0.5
DEFAULT_NEIGHBOUR_WEIGHT = 0.5
# Lookups of one context run at once; the pool is per process, sized for a few requests in flight. The words half
# of a search whose halves run apart (memories_for) has a pool of its own: a lookup of the first pool waits for it.
POOL_WORKERS = 8
HALVES_WORKERS = 4

_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _executor(name: str, workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if name not in _pools:
            _pools[name] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        return _pools[name]


def pool() -> ThreadPoolExecutor:
    return _executor("recall", POOL_WORKERS)


# ---------------------------------------------------------------- search


def search(
    clients, project_id: str, user_id: str, query: str, *, tiers: list[Tier] | tuple[Tier, ...] | None = None,
    limit: int = 10, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
) -> list[ScoredMemory]:
    """Hybrid search (memory_search.hybrid): the nearest memories by cosine and the best by BM25, blended, each
    hit's session neighbours lifted. If the query cannot be embedded, the full-text half answers alone (logged,
    metric)."""
    return memories_for(clients, project_id, user_id, query, tiers=tiers, limit=limit, filters=filters,
                        as_of=as_of)[0]


def memories_for(
    clients, project_id: str, user_id: str, query: str, *, tiers: list[Tier] | tuple[Tier, ...] | None, limit: int,
    filters: dict[str, Any] | None = None, as_of: datetime | None = None,
) -> tuple[list[ScoredMemory], bool]:
    """`search`'s memories, and whether the query was embedded.

    One statement (memory_search.hybrid), but for a user this process knows to have many memories
    (memory_search.halves_apart): then each half takes a while, so they run at once, on two connections (the words
    half while the query is embedded), and are blended in a third statement."""
    db, model = clients.db, clients.llm.embedding_model
    vector_weight, neighbour_weight = weights(clients)
    apart = as_of is None and not filters and memory_search.halves_apart(project_id, user_id, tiers)
    words = _executor("halves", HALVES_WORKERS).submit(
        memory_search.matching, db, project_id, user_id, query, k=CANDIDATES, tiers=tiers) if apart else None
    embedding = embed_query(clients, query)
    if words is None:
        return rank(db, project_id, user_id, query=query, embedding=embedding, limit=limit, tiers=tiers,
                    vector_weight=vector_weight, neighbour_weight=neighbour_weight, embedding_model=model,
                    filters=filters, as_of=as_of), embedding is not None
    near = [] if embedding is None else memory_search.nearest(
        db, project_id, user_id, embedding, k=CANDIDATES, embedding_model=model, tiers=tiers)
    return memory_search.blend_found(db, project_id, user_id, near, words.result(), limit=limit,
                                     vector_weight=vector_weight, neighbour_weight=neighbour_weight,
                                     tiers=tiers), embedding is not None


def rank(
    db, project_id: str, user_id: str, *, query: str, embedding: list[float] | None, limit: int,
    tiers: list[Tier] | tuple[Tier, ...] | None = None, vector_weight: float = DEFAULT_VECTOR_WEIGHT,
    neighbour_weight: float = DEFAULT_NEIGHBOUR_WEIGHT, embedding_model: str | None = None,
    filters: dict[str, Any] | None = None, as_of: datetime | None = None, candidates: int = CANDIDATES,
) -> list[ScoredMemory]:
    """The hybrid search of `search` for a caller that already holds the query's embedding: an empty query
    searches by vector only, no embedding by full text only."""
    return memory_search.hybrid(db, project_id, user_id, query, embedding, k=candidates, limit=limit,
                                vector_weight=vector_weight, neighbour_weight=neighbour_weight,
                                embedding_model=embedding_model, tiers=tiers, filters=filters, as_of=as_of)


def weights(clients) -> tuple[float, float]:
    """The vector list's share of a blended score (set, else the embedding model's), and the neighbours' share."""
    settings = clients.settings
    vector_weight = settings.search_vector_weight
    if vector_weight is None:
        vector_weight = MODEL_VECTOR_WEIGHT.get(clients.llm.embedding_model, DEFAULT_VECTOR_WEIGHT)
    return vector_weight, settings.search_neighbour_weight


def embed_query(clients, query: str) -> list[float] | None:
    try:
        return clients.llm.embed([query], timeout_s=clients.settings.query_embed_timeout_s).vectors[0]
    except LLMError as exc:
        logger.warning("query not embedded; full-text search only", extra={"error": str(exc)})
        metrics.add_metric(name=Metric.QUERY_EMBEDDING_SKIPPED, unit=MetricUnit.Count, value=1)
        return None


# ---------------------------------------------------------------- context


def build_context(
    clients, project_id: str, user_id: str, *, query: str | None = None, session_id: str | None = None,
    max_tokens: int, deadline_s: float | None = None,
) -> RecallContext:
    """Narrative, rules, memories (searched with `query`, else the newest), the session's recent turns and what
    the user said that is not learned yet (reverie.chat.pending), fitted into `max_tokens`. Two lookups run at once:
    the search, and everything else (`_of_user`).

    A part whose engine is down (or slower than `deadline_s`) is left out, logged and counted, never
    raised: recall makes an answer better, it must not stop one."""
    settings = clients.settings
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    # The search first: it is the longest, and the other fits beside it.
    if query:
        lookups: dict[str, Any] = {"memories": lambda: memories_for(
            clients, project_id, user_id, query, tiers=SEARCH_TIERS, limit=settings.recall_limit)}
    else:
        lookups = {"memories": lambda: (newest(clients, project_id, user_id, settings.recall_limit), True)}
    of_user: dict[str, Any] = {}
    lookups["user"] = lambda: _of_user(clients, project_id, user_id, session_id, into=of_user)
    found, failed = _run_all(lookups, deadline)
    found.pop("user", None)
    failed.discard("user")
    # What the lookup of the user had found by now: one cut short by the deadline keeps the parts it had (a copy, as
    # it may still be adding to it).
    found.update(dict(of_user))
    failed |= {part for part in _user_parts(clients, session_id) if part not in found}
    shown, embedded = found.get("memories") or ([], True)

    degraded = []
    if failed - {"recent_turns", "pending"}:
        degraded.append("postgres")
        logger.warning("recall without long-term memories",
                       extra={"parts": sorted(failed - {"recent_turns", "pending"})})
        metrics.add_metric(name=Metric.LONG_TERM_RECALL_SKIPPED, unit=MetricUnit.Count, value=1)
    if "recent_turns" in failed:
        logger.warning("recall without recent turns")
        metrics.add_metric(name=Metric.RECENT_TURNS_SKIPPED, unit=MetricUnit.Count, value=1)
    if "pending" in failed:
        logger.warning("recall without the turns not learned yet")
        metrics.add_metric(name=Metric.PENDING_TURNS_SKIPPED, unit=MetricUnit.Count, value=1)
    if failed & {"recent_turns", "pending"}:
        degraded.append("valkey")
    if not embedded:
        degraded.append("embeddings")

    story = found.get("narrative")
    rules, recent = found.get("rules") or [], found.get("recent_turns") or []
    return fit(
        narrative=story["text"] if story else None, narrative_version=story["version"] if story else None,
        rules=rules, memories=shown, recent_turns=recent, max_tokens=max_tokens, degraded=degraded,
        pending=said.rank(said.not_shown(found.get("pending") or [], recent, [*rules, *shown]), query),
        narrative_absent=story is None and "narrative" in found,
    )


def _run_all(lookups: dict[str, Any], deadline: float | None) -> tuple[dict[str, Any], set[str]]:
    """Run the lookups at once until `deadline` (time.monotonic()); the results, and the names that failed."""
    executor = pool()
    futures: dict[str, Future] = {name: executor.submit(fn) for name, fn in lookups.items()}
    found: dict[str, Any] = {}
    failed: set[str] = set()
    for name, future in futures.items():
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            found[name] = future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()
            failed.add(name)
            logger.warning("recall lookup too slow, left out", extra={"part": name})
        except Exception as exc:
            failed.add(name)
            logger.warning("recall lookup failed", extra={"part": name, "error": type(exc).__name__})
    return found, failed


def _user_parts(clients, session_id: str | None) -> list[str]:
    """The parts of a context `_of_user` looks up."""
    parts = ["narrative", "rules"]
    if session_id:
        parts.append("recent_turns")
    if clients.settings.pending_max_turns:
        parts.append("pending")
    return parts


def _of_user(clients, project_id: str, user_id: str, session_id: str | None, *, into: dict[str, Any]) -> None:
    """Every part of the context but the memories, one after the other, each put `into` as soon as it is known: the
    user's keys in Valkey in one round trip (reverie.cache.recall_reads), which hold the session's recent turns and
    what the user said; the rules, and which of the said turns are learned, in one Postgres read
    (reverie.store.recall_reads); the narrative (its hot copy, as read; Postgres on a miss). A part that cannot be
    read is left out, logged. Without Valkey the narrative comes from Postgres, and the recent and said turns are
    missing; without Postgres the said turns are all kept.

    One lookup, not one for each engine: beside the search, which takes longer, each lookup more is a thread's
    wakeup and a Postgres connection more for every turn, competing with the search for the same cores."""
    with_pending = "pending" in _user_parts(clients, session_id)
    try:
        read = recall_reads.read(clients.valkey, project_id, user_id, session_id=session_id,
                                 recent_limit=clients.settings.working_memory_max_turns, with_pending=with_pending)
    except VALKEY_ERRORS as exc:
        logger.warning("recall lookup failed", extra={"part": "user_reads", "error": type(exc).__name__})
        read = None
    if read is not None and read.recent_turns is not None:
        into["recent_turns"] = read.recent_turns
    entries = None if read is None else read.pending
    learned: set[str] = set()  # without Postgres nothing is known to be learned: every said turn is kept
    try:
        into["rules"], learned = pg_reads.rules_and_learned(clients.db, project_id, user_id, limit=RULES_LIMIT,
                                                            job_ids=said.job_ids(entries or []))
    except Exception as exc:  # the other parts stand
        logger.warning("recall lookup failed", extra={"part": "rules", "error": type(exc).__name__})
    if entries is not None:
        _look_up(into, "pending", lambda: said.unlearned(clients, project_id, user_id, entries=entries,
                                                         learned=learned))
    _look_up(into, "narrative", lambda: fresh_narrative(
        clients, project_id, user_id, copy=hot_copy.UNREADABLE if read is None else read.narrative))


def _look_up(into: dict[str, Any], part: str, fn) -> None:
    try:
        into[part] = fn()
    except Exception as exc:  # the other parts stand
        logger.warning("recall lookup failed", extra={"part": part, "error": type(exc).__name__})


def fresh_narrative(clients, project_id: str, user_id: str, *, copy: hot_copy.Hot | None = None
                    ) -> dict[str, Any] | None:
    """The newest narrative, from its hot copy in Valkey (`copy` when read already; Postgres only on a miss). A
    stale one is used too, and its regeneration queued after the response (one pending job per user at most); it is
    never written here."""
    return narrative_jobs.for_recall(clients, project_id, user_id, later=after_response.defer, copy=copy)


def newest(clients, project_id: str, user_id: str, limit: int) -> list[ScoredMemory]:
    """Without a query there is nothing to rank by: the newest current memories of tiers 2-3."""
    found = []
    for tier in SEARCH_TIERS:
        found += memories.current_by_tier(clients.db, project_id, user_id, tier, limit, ScoredMemory)
    found.sort(key=lambda m: m.created_at, reverse=True)
    return found[:limit]
