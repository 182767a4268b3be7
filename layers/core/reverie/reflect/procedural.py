"""Tier 4: preferences, habits and standing instructions, reconciled with the rules already known."""

from __future__ import annotations

from collections.abc import Sequence

from reverie.models import ReflectionJob, Tier
from reverie.reflect import prompts, reconcile
from reverie.reflect.extract import item_for, job_for, slot_key
from reverie.reflect.plan import Item, Plan
from reverie.reflect.schemas import ProceduralExtraction

TIER = Tier.PROCEDURAL
PURPOSE = "extract_procedural"
NOTHING = "no preferences, habits or instructions in this exchange"


def extract(meter, jobs: Sequence[ReflectionJob]) -> list[Item]:
    refs = prompts.job_refs(jobs)
    items: list[Item] = []
    for lines in prompts.conversation_chunks(jobs):
        result = meter.structured(prompts.extraction_messages(TIER, lines), ProceduralExtraction, purpose=PURPOSE)
        for rule in result.value.rules:
            job = job_for(rule.job, refs, jobs, TIER.value)
            item = item_for(f"N{len(items) + 1}", job, rule.text, slot=slot_key(rule.slot), extra={"kind": rule.kind})
            if item:
                items.append(item)
    return items


def plan(meter, db, project_id: str, user_id: str, jobs: Sequence[ReflectionJob]) -> Plan:
    items = extract(meter, jobs)
    return Plan(changes=reconcile.plan_items(meter, db, TIER, project_id, user_id, items), nothing_reason=NOTHING)
