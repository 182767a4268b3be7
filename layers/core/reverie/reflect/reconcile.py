"""Reconciliation of new items with what is known (tiers 3 and 4): deterministic rules first, then one model
call for the whole user batch, only for items that relate to something and are not plain duplicates.

Rules that hold whatever the model answers: an exact duplicate (same normalised text) or a near duplicate
(cosine >= NEAR_DUPLICATE) of a current memory or of an earlier item is never stored; an UPDATE or SUPERSEDE
only ever targets a memory or item the model was shown for that item; an item the model leaves out or
answers nonsensically for is added, never dropped (the unique index still refuses an exact duplicate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reverie.domain.fields import storable_text
from reverie.domain.tiers import Tier
from reverie.reflect import prompts
from reverie.reflect.plan import Change, Item
from reverie.reflect.schemas import Decision, Reconciliation
from reverie.store import memories, memory_search
from reverie.store.memories import content_hash
from reverie.store.memory_search import Candidate

# Cosine above which two texts say the same thing (paraphrase, punctuation, word order): never stored twice.
NEAR_DUPLICATE = 0.92
# Cosine above which a memory is about the same thing and the model must decide; below it, with no shared
# slot, the item is simply added and no call is made.
RELATED = 0.6
# At most this many known memories per item are shown to the model.
MAX_SHOWN = 5


def cosine(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    if not a or not b:
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


@dataclass
class Question:
    """An item the model must decide on, with what it may relate to: stored memories and earlier items."""

    item: Item
    memories: list[Candidate]
    earlier: list[Item]


def triage(items: Sequence[Item], found: Sequence[Sequence[Candidate]], stored_hashes: set[str]
           ) -> tuple[dict[str, Change], list[Question]]:
    """Decide what needs no model: duplicates are NOOP, unrelated items are ADD. The rest become questions."""
    settled: dict[str, Change] = {}
    questions: list[Question] = []
    kept: list[Item] = []  # earlier items of this batch that will be written
    seen_hashes: dict[str, str] = {}
    for item, candidates in zip(items, found, strict=True):
        digest = content_hash(item.text)
        if digest in stored_hashes:
            settled[item.ref] = Change(item, "NOOP", note="already known")
            continue
        if digest in seen_hashes:
            settled[item.ref] = Change(item, "NOOP", note=f"same as {seen_hashes[digest]} in this batch")
            continue
        nearest = max(candidates, key=lambda c: c.similarity or 0.0, default=None)
        if nearest is not None and (nearest.similarity or 0.0) >= NEAR_DUPLICATE:
            note = f"near duplicate of a known memory ({nearest.similarity:.2f})"
            settled[item.ref] = Change(item, "NOOP", note=note)
            continue
        twin = next((e for e in kept if cosine(e.embedding, item.embedding) >= NEAR_DUPLICATE), None)
        if twin is not None:
            settled[item.ref] = Change(item, "NOOP", note=f"near duplicate of {twin.ref} in this batch")
            continue
        seen_hashes[digest] = item.ref
        related = [c for c in candidates if _related(item, c.slot, c.similarity)]
        earlier = [e for e in kept if _related(item, e.slot, cosine(e.embedding, item.embedding))]
        kept.append(item)
        if not related and not earlier:
            settled[item.ref] = Change(item, "ADD")
            continue
        # Show the related ones first, then other candidates (text matches) for context, within a bound.
        shown = related + [c for c in candidates if c not in related]
        questions.append(Question(item, shown[:MAX_SHOWN], earlier[-MAX_SHOWN:]))
    return settled, questions


def _related(item: Item, slot: str | None, similarity: float | None) -> bool:
    return bool(item.slot and slot == item.slot) or (similarity or 0.0) >= RELATED


def memory_refs(questions: Sequence[Question]) -> dict[str, Candidate]:
    """M1, M2, ...: one reference per stored memory shown, numbered in order of first appearance."""
    refs: dict[str, Candidate] = {}
    ids: set[str] = set()
    for q in questions:
        for c in q.memories:
            if c.id not in ids:
                ids.add(c.id)
                refs[f"M{len(refs) + 1}"] = c
    return refs


def ask(meter, tier: Tier, questions: Sequence[Question]) -> list[Decision]:
    """One model call for all questions of the user batch."""
    refs = memory_refs(questions)
    ref_of = {c.id: ref for ref, c in refs.items()}
    known_lines = [
        {"ref": ref, "text": c.text, "slot": c.slot, "since": c.valid_from.date().isoformat() if c.valid_from else None}
        for ref, c in refs.items()
    ]
    # Earlier items of this batch that were accepted without a question are shown as known too.
    asked = {q.item.ref for q in questions}
    shown: set[str] = set()
    for q in questions:
        for e in q.earlier:
            if e.ref not in asked and e.ref not in shown:
                shown.add(e.ref)
                known_lines.append({"ref": e.ref, "text": e.text, "slot": e.slot,
                                    "since": e.valid_from.date().isoformat() if e.valid_from else None})
    new_lines = [
        {"ref": q.item.ref, "text": q.item.text, "slot": q.item.slot,
         "candidates": [ref_of[c.id] for c in q.memories] + [e.ref for e in q.earlier]}
        for q in questions
    ]
    messages = prompts.reconcile_messages(known_lines, new_lines)
    result = meter.structured(messages, Reconciliation, purpose=f"reconcile_{Tier(tier).value}")
    return result.value.decisions


def settle(questions: Sequence[Question], decisions: Sequence[Decision]) -> dict[str, Change]:
    """Turn the model's decisions into changes, refusing any it was not entitled to make."""
    refs = memory_refs(questions)
    by_item: dict[str, Decision] = {}
    for d in decisions:
        by_item.setdefault(d.item, d)  # the first decision for an item wins
    changes: dict[str, Change] = {}
    for q in questions:
        item = q.item
        decision = by_item.get(item.ref)
        if decision is None:
            changes[item.ref] = Change(item, "ADD", note="no decision returned; added")
        elif decision.action == "ADD":
            changes[item.ref] = Change(item, "ADD")
        elif decision.action == "NOOP":
            changes[item.ref] = Change(item, "NOOP", note=_clip(decision.reason) or "already known")
        else:
            # A target must be one the model was shown for this very item.
            memory = refs.get(decision.target or "")
            earlier = next((e for e in q.earlier if e.ref == decision.target), None)
            if memory is not None and any(c.id == memory.id for c in q.memories):
                changes[item.ref] = Change(item, decision.action, target_id=memory.id,
                                           target_valid_from=memory.valid_from)
            elif earlier is not None:
                changes[item.ref] = Change(item, decision.action, target_ref=earlier.ref)
            else:
                changes[item.ref] = Change(item, "ADD", note=f"{decision.action} without a valid target; added")
    return changes


def _clip(text: str | None, limit: int = 200) -> str | None:
    """A model's reason as a storable note (no NUL or lone surrogate), clipped."""
    if text is None:
        return None
    text = storable_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reconcile(meter, tier: Tier, items: Sequence[Item], found: Sequence[Sequence[Candidate]],
              stored_hashes: set[str]) -> list[Change]:
    """One change per item, in item order; at most one model call."""
    settled, questions = triage(items, found, stored_hashes)
    if questions:
        settled.update(settle(questions, ask(meter, tier, questions)))
    return [settled[item.ref] for item in items]


def plan_items(meter, db, tier: Tier, project_id: str, user_id: str, items: list[Item]) -> list[Change]:
    """Embed the items in one call, look up what each may relate to in one query, reconcile in at most one
    model call."""
    if not items:
        return []
    vectors = meter.embed([item.text for item in items]).vectors
    for item, vector in zip(items, vectors, strict=True):
        item.embedding, item.embedding_model = vector, meter.embedding_model
    probes = [memory_search.Probe(item.embedding, item.slot, item.text) for item in items]
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        found = memory_search.candidates(cur, project_id, user_id, tier, probes)
        stored = memories.current_hashes(cur, project_id, user_id, tier, [item.text for item in items])
    return reconcile(meter, tier, items, found, stored)
