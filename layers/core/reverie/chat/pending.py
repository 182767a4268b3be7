"""Recall of what the user said that the tiers have not learned yet (reverie.cache.pending), so a new session is
answered from what was just said, whatever the reflection window.

The user's list is read (one Valkey round trip) and the jobs every tier has learned are left out (one Postgres
read) and removed from the list; the rest is ranked by the words it shares with the query (a full-text match over
a few dozen short entries, in process), newest first among equals. Recall then leaves out what it already shows
another way (the session's own recent turns, a turn whose learned memory is in the context), so nothing is shown
twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from reverie.cache import pending as pending_list
from reverie.domain.memory import PendingTurn, ScoredMemory, Turn
from reverie.platform.observability import logger
from reverie.store import processed_jobs

_WORD = re.compile(r"[\w']+")
_STOP = frozenset(str.split(
    "a an the and or but so of to in on at for with from by about as is are was were be been being am do does did "
    "have has had i me my mine we us our you your it its this that these those what which who whom when where why "
    "how can could should would will shall may might must not no yes just also very really too than then there "
    "here some any all each more most much many again now still ever"
))


def unlearned(clients, project_id: str, user_id: str,
              entries: list[tuple[bytes | str, PendingTurn]] | None = None,
              learned: set[str] | None = None) -> list[PendingTurn]:
    """The user's turns whose jobs some tier has not learned yet, oldest first (of `entries`, the list as the caller
    read it, if given; of the jobs `learned`, if the caller asked Postgres already: `job_ids`). Entries of learned
    jobs are removed from the list. Raises what Valkey raises; without Postgres nothing is known to be learned, so
    all are kept."""
    if entries is None:
        entries = pending_list.read(clients.valkey, project_id, user_id)
    if not entries:
        return []
    if learned is None:
        try:
            learned = processed_jobs.learned(clients.db, project_id, user_id, job_ids(entries))
        except Exception as exc:
            logger.warning("pending turns not checked against what is learned", extra={"error": type(exc).__name__})
            learned = set()
    if learned:
        try:
            pending_list.drop(clients.valkey, project_id, user_id, [raw for raw, t in entries if t.job_id in learned])
        except Exception as exc:  # they are left out anyway, and removed by the next read
            logger.warning("learned turns not removed from the pending list", extra={"error": type(exc).__name__})
    return [turn for _, turn in entries if turn.job_id not in learned]


def job_ids(entries: list[tuple[bytes | str, PendingTurn]]) -> list[str]:
    """The jobs of the entries of a pending list, whose learning `unlearned` checks."""
    return sorted({turn.job_id for _, turn in entries})


def terms(text: str) -> set[str]:
    """The words a text is matched on: lower case, without the commonest words, crudely stemmed."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _stem(word: str) -> str:
    """live, lives, lived, living -> liv: enough for a few dozen short sentences to meet a query's words."""
    word = word.removesuffix("'s")
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def rank(turns: Sequence[PendingTurn], query: str | None) -> list[PendingTurn]:
    """Best first: the most words shared with the query, then the newest (the newest first without a query). Every
    pending turn is a candidate: there are few, and what was just said matters even when worded differently."""
    wanted = terms(query or "")
    scored = [t.model_copy(update={"score": float(len(wanted & terms(t.text)))}) for t in turns]
    return sorted(scored, key=lambda t: (-t.score, -t.said_at.timestamp(), t.turn_id))


def not_shown(turns: Iterable[PendingTurn], recent_turns: Sequence[Turn],
              memories: Iterable[ScoredMemory]) -> list[PendingTurn]:
    """The pending turns that the context does not show already: not among the session's recent turns, and no
    memory learned from their job among the memories and rules shown."""
    in_session = {t.turn_id for t in recent_turns}
    learned_from: set[str] = set()
    for memory in memories:
        if memory.source_job_id:
            learned_from.add(memory.source_job_id)
        jobs = (memory.metadata or {}).get("jobs")
        if isinstance(jobs, list):
            learned_from.update(str(j) for j in jobs)
    return [t for t in turns if t.turn_id not in in_session and t.job_id not in learned_from]


def matching(clients, project_id: str, user_id: str, query: str, limit: int) -> list[PendingTurn]:
    """For a search: the pending turns that share words with the query, best first, at most `limit`. A search
    answers without them when Valkey cannot be read (logged)."""
    try:
        turns = unlearned(clients, project_id, user_id)
    except Exception as exc:
        logger.warning("search without the turns not learned yet", extra={"error": type(exc).__name__})
        return []
    return [t for t in rank(turns, query) if t.score > 0][:limit]
