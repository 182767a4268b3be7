"""Tier 3: facts and entities about the user, reconciled with what is already known."""

from __future__ import annotations

from collections.abc import Sequence

from reverie.models import ReflectionJob, Tier
from reverie.reflect import prompts, reconcile
from reverie.reflect.extract import item_for, job_for, slot_key
from reverie.reflect.plan import Item, Plan
from reverie.reflect.schemas import SemanticExtraction

TIER = Tier.SEMANTIC
PURPOSE = "extract_semantic"
NOTHING = "no facts about the user in this exchange"


def extract(meter, jobs: Sequence[ReflectionJob]) -> list[Item]:
    """One model call for all the jobs of a user batch (more only when they exceed one prompt's budget)."""
    refs = prompts.job_refs(jobs)
    items: list[Item] = []
    for lines in prompts.conversation_chunks(jobs):
        result = meter.structured(prompts.extraction_messages(TIER, lines), SemanticExtraction, purpose=PURPOSE)
        for fact in result.value.facts:
            job = job_for(fact.job, refs, jobs, TIER.value)
            entities = [{"name": e.name.strip()[:100], "type": e.type} for e in fact.entities if e.name.strip()]
            item = item_for(f"N{len(items) + 1}", job, fact.text, slot=slot_key(fact.slot),
                            extra={"entities": entities[:20]})
            if item:
                items.append(item)
    return items


def plan(meter, db, project_id: str, user_id: str, jobs: Sequence[ReflectionJob]) -> Plan:
    items = extract(meter, jobs)
    return Plan(changes=reconcile.plan_items(meter, db, TIER, project_id, user_id, items), nothing_reason=NOTHING)
