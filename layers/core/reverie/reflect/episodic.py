"""Tier 2: one episode per session batch (when, who, a short summary, importance)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

from reverie.domain.tiers import Tier, TierStatus
from reverie.jobs.message import ReflectionJob
from reverie.reflect import prompts
from reverie.reflect.extract import item_for
from reverie.reflect.plan import Change, Item, Plan
from reverie.reflect.schemas import Episode, EpisodicExtraction

TIER = Tier.EPISODIC
PURPOSE = "extract_episodic"
NOTHING = "nothing worth an episode (small talk only)"


def _when(value: str | None, fallback: date) -> date:
    try:
        return date.fromisoformat((value or "")[:10])
    except ValueError:
        return fallback


def _merge(a: Episode, b: Episode) -> Episode:
    """A model may split one session in two; an episode is one per session batch."""
    who = a.who + [w for w in b.who if w not in a.who]
    return Episode(session=a.session, when=a.when or b.when, who=who, summary=f"{a.summary} {b.summary}",
                   importance=max(a.importance, b.importance))


def extract(meter, jobs: Sequence[ReflectionJob]) -> dict[str, Episode]:
    """Episodes by session id, from one model call for the whole user batch."""
    sessions = prompts.session_refs(jobs)
    episodes: dict[str, Episode] = {}
    for lines in prompts.conversation_chunks(jobs):
        result = meter.structured(prompts.extraction_messages(TIER, lines), EpisodicExtraction, purpose=PURPOSE)
        for episode in result.value.episodes:
            session_id = sessions.get(episode.session)
            if session_id is None and len(sessions) == 1:
                session_id = next(iter(sessions.values()))
            if session_id is None:
                continue
            seen = episodes.get(session_id)
            episodes[session_id] = _merge(seen, episode) if seen else episode
    return episodes


def plan(meter, db, project_id: str, user_id: str, jobs: Sequence[ReflectionJob]) -> Plan:
    plan = Plan(nothing_reason=NOTHING)
    items: list[Item] = []
    for session_id, episode in extract(meter, jobs).items():
        session_jobs = [j for j in jobs if j.session_id == session_id]
        first = session_jobs[0]
        when = _when(episode.when, first.turns[0].created_at.date())
        who = [w.strip()[:100] for w in episode.who if w.strip()][:20]
        item = item_for(f"N{len(items) + 1}", first, f"{when.isoformat()}: {episode.summary.strip()}",
                        extra={"kind": "episode", "when": when.isoformat(), "who": who,
                               "jobs": [j.job_id for j in session_jobs]})
        if item is None or not episode.summary.strip():
            continue
        importance = float(episode.importance)
        item.importance = min(1.0, max(0.0, importance)) if math.isfinite(importance) else None
        item.valid_from = first.turns[0].created_at
        item.source_turn_ids = [t.turn_id for j in session_jobs for t in j.turns]
        items.append(item)
        for other in session_jobs[1:]:
            plan.settled[other.job_id] = (TierStatus.DONE, f"summarised in one episode with job {first.job_id}")
    if items:
        vectors = meter.embed([item.text for item in items]).vectors
        for item, vector in zip(items, vectors, strict=True):
            item.embedding, item.embedding_model = vector, meter.embedding_model
    plan.changes = [Change(item, "ADD") for item in items]
    return plan
