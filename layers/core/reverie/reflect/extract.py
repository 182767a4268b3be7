"""Shared by the tier modules: turning a model's extracted entries into items attributed to their jobs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from reverie.domain.fields import storable_value
from reverie.domain.tiers import Tier
from reverie.jobs.message import ReflectionJob
from reverie.platform.observability import logger
from reverie.reflect import prompts
from reverie.reflect.plan import Item, clean_text


def slot_key(slot: str | None) -> str | None:
    if not slot:
        return None
    key = re.sub(r"[^a-z0-9]+", "_", slot.lower()).strip("_")[:64]
    return key or None


def said_at(job: ReflectionJob) -> datetime:
    """When the user said it: the job's last user turn (its last turn when it has none)."""
    user_turns = [t for t in job.turns if t.role == "user"]
    return (user_turns or job.turns)[-1].created_at


def user_turn_ids(job: ReflectionJob) -> list[str]:
    return [t.turn_id for t in job.turns if t.role == "user"] or [t.turn_id for t in job.turns]


def job_for(ref: str, refs: dict[str, ReflectionJob], jobs: Sequence[ReflectionJob], tier: str) -> ReflectionJob:
    """The job a model's reference names. An unknown reference is attributed to the batch's last job rather
    than dropped: the item did come from this batch, and a silently unsaved memory is worse."""
    job = refs.get(ref)
    if job is None:
        logger.warning("extraction named an unknown job reference", extra={"tier": tier, "ref": ref[:20]})
        job = jobs[-1]
    return job


def item_for(ref: str, job: ReflectionJob, text: str, *, slot: str | None = None,
             extra: dict[str, Any] | None = None) -> Item | None:
    text = clean_text(text)
    if not text:
        return None
    metadata = dict(job.metadata)
    metadata.update({k: storable_value(v) for k, v in (extra or {}).items() if v not in (None, [], "")})
    if slot:
        metadata["slot"] = slot
    return Item(ref=ref, job_id=job.job_id, text=text, slot=slot, metadata=metadata, session_id=job.session_id,
                valid_from=said_at(job), source_turn_ids=user_turn_ids(job))


def extract_items(
    meter, jobs: Sequence[ReflectionJob], *, tier: Tier, schema, purpose: str,
    entries: Callable[[Any], Iterable[Any]], extra: Callable[[Any], dict[str, Any]],
) -> list[Item]:
    """One model call for all the jobs of a user batch (more only when they exceed one prompt's budget); each
    extracted entry (with .job, .text, .slot) becomes an item attributed to its job."""
    refs = prompts.job_refs(jobs)
    items: list[Item] = []
    for lines in prompts.conversation_chunks(jobs):
        result = meter.structured(prompts.extraction_messages(tier, lines), schema, purpose=purpose)
        for entry in entries(result.value):
            job = job_for(entry.job, refs, jobs, tier.value)
            item = item_for(f"N{len(items) + 1}", job, entry.text, slot=slot_key(entry.slot), extra=extra(entry))
            if item:
                items.append(item)
    return items
