"""Tier 4: preferences, habits and standing instructions, reconciled with the rules already known."""

from __future__ import annotations

from collections.abc import Sequence

from reverie.domain.tiers import Tier
from reverie.jobs.message import ReflectionJob
from reverie.reflect import reconcile
from reverie.reflect.extract import extract_items
from reverie.reflect.plan import Item, Plan
from reverie.reflect.schemas import ProceduralExtraction

TIER = Tier.PROCEDURAL
PURPOSE = "extract_procedural"
NOTHING = "no preferences, habits or instructions in this exchange"


def extract(meter, jobs: Sequence[ReflectionJob]) -> list[Item]:
    return extract_items(meter, jobs, tier=TIER, schema=ProceduralExtraction, purpose=PURPOSE,
                         entries=lambda value: value.rules, extra=lambda rule: {"kind": rule.kind})


def plan(meter, db, project_id: str, user_id: str, jobs: Sequence[ReflectionJob]) -> Plan:
    items = extract(meter, jobs)
    return Plan(changes=reconcile.plan_items(meter, db, TIER, project_id, user_id, items), nothing_reason=NOTHING)
