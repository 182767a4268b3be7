"""Tier 3: facts and entities about the user, reconciled with what is already known."""

from __future__ import annotations

from collections.abc import Sequence

from reverie.domain.tiers import Tier
from reverie.jobs.message import ReflectionJob
from reverie.reflect import reconcile
from reverie.reflect.extract import extract_items
from reverie.reflect.plan import Item, Plan
from reverie.reflect.schemas import SemanticExtraction

TIER = Tier.SEMANTIC
PURPOSE = "extract_semantic"
NOTHING = "no facts about the user in this exchange"


def extract(meter, jobs: Sequence[ReflectionJob]) -> list[Item]:
    return extract_items(meter, jobs, tier=TIER, schema=SemanticExtraction, purpose=PURPOSE,
                         entries=lambda value: value.facts, extra=_entities)


def _entities(fact) -> dict:
    entities = [{"name": e.name.strip()[:100], "type": e.type} for e in fact.entities if e.name.strip()]
    return {"entities": entities[:20]}


def plan(meter, db, project_id: str, user_id: str, jobs: Sequence[ReflectionJob]) -> Plan:
    items = extract(meter, jobs)
    return Plan(changes=reconcile.plan_items(meter, db, TIER, project_id, user_id, items), nothing_reason=NOTHING)
