"""Reconciliation rules (no I/O): duplicates never stored, the model asked only when needed, and whatever the
model answers, no change targets something it was not shown and no item is dropped."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from reverie.llm.offline import hashed_embedding
from reverie.reflect import reconcile
from reverie.reflect.plan import Item
from reverie.reflect.schemas import Decision, Reconciliation
from reverie.store.memories import content_hash
from reverie.store.memory_search import Candidate

TEXTS = ["User lives in Porto", "User lives in Berlin", "User lives in Porto.", "User likes tea",
         "User likes coffee", "User's sister is Ana", "User works at Acme", "User works at Globex",
         "User always takes the train", "User always takes a train", "User always takes the train to work"]
SLOTS = {"User lives in Porto": "home_city", "User lives in Berlin": "home_city", "User lives in Porto.": "home_city",
         "User works at Acme": "employer", "User works at Globex": "employer"}


def vec(text: str) -> list[float]:
    return hashed_embedding(text, 64)


def item(ref: str, text: str) -> Item:
    return Item(ref=ref, job_id=f"job-{ref}", text=text, slot=SLOTS.get(text), embedding=vec(text),
                valid_from=datetime(2026, 1, 1, tzinfo=UTC))


def candidate(memory_id: str, text: str, probe: Item) -> Candidate:
    return Candidate(memory_id, text, SLOTS.get(text), reconcile.cosine(vec(text), probe.embedding),
                     datetime(2025, 1, 1, tzinfo=UTC), {"vector"})


class FixedMeter:
    """Answers the reconciliation call with given decisions and counts calls."""

    def __init__(self, decisions: list[Decision]):
        self.decisions = decisions
        self.calls = 0

    def structured(self, messages, schema, *, purpose):
        from reverie.llm import Structured, Usage

        self.calls += 1
        return Structured(Reconciliation(decisions=self.decisions), Usage(model="fixed"))


def run(new_texts: list[str], stored_texts: list[str], decisions: list[Decision]):
    items = [item(f"N{i + 1}", t) for i, t in enumerate(new_texts)]
    found = [[candidate(f"m{j}", t, it) for j, t in enumerate(stored_texts)] for it in items]
    stored_hashes = {content_hash(t) for t in stored_texts}
    meter = FixedMeter(decisions)
    return items, found, meter, reconcile.reconcile(meter, "semantic", items, found, stored_hashes)


def test_an_exact_duplicate_of_a_known_memory_is_noop_without_a_call():
    _, _, meter, (change,) = run(["User lives in Porto."], ["User lives in Porto"], [])
    assert change.action == "NOOP" and meter.calls == 0


def test_a_repeated_item_in_one_batch_is_stored_once():
    _, _, meter, changes = run(["User likes tea", "User likes tea"], [], [])
    assert [c.action for c in changes] == ["ADD", "NOOP"] and meter.calls == 0


def test_a_near_duplicate_is_noop_without_a_call():
    _, _, meter, (change,) = run(["User always takes a train"], ["User always takes the train"], [])
    assert change.action == "NOOP" and "near duplicate" in change.note and meter.calls == 0


def test_an_unrelated_item_is_added_without_a_call():
    _, _, meter, (change,) = run(["User's sister is Ana"], ["User works at Acme"], [])
    assert change.action == "ADD" and meter.calls == 0


def test_related_items_are_decided_in_one_call_for_the_batch():
    decisions = [Decision(item="N1", action="SUPERSEDE", target="M1", reason=None),
                 Decision(item="N2", action="SUPERSEDE", target="M2", reason=None)]
    _, _, meter, changes = run(["User lives in Berlin", "User works at Globex"],
                                   ["User lives in Porto", "User works at Acme"], decisions)
    assert meter.calls == 1
    assert [(c.action, c.target_id) for c in changes] == [("SUPERSEDE", "m0"), ("SUPERSEDE", "m1")]


def test_a_decision_naming_a_memory_not_shown_for_the_item_becomes_add():
    # m1 (Acme) was shown for the employer item only; the home item may not supersede it.
    decisions = [Decision(item="N1", action="SUPERSEDE", target="M2", reason=None)]
    items = [item("N1", "User lives in Berlin")]
    found = [[candidate("m0", "User lives in Porto", items[0])]]
    other = item("N2", "User works at Globex")
    questions = [reconcile.Question(items[0], found[0], []),
                 reconcile.Question(other, [candidate("m1", "User works at Acme", other)], [])]
    changes = reconcile.settle(questions, decisions)
    assert changes["N1"].action == "ADD" and changes["N1"].target_id is None
    assert changes["N2"].action == "ADD"  # no decision returned for it: added, never dropped


st_texts = st.lists(st.sampled_from(TEXTS), max_size=6)
st_decision = st.builds(
    Decision, item=st.sampled_from([f"N{i}" for i in range(1, 8)] + ["X", ""]),
    action=st.sampled_from(["ADD", "UPDATE", "SUPERSEDE", "NOOP"]),
    target=st.one_of(st.none(), st.sampled_from([f"M{i}" for i in range(1, 8)] + [f"N{i}" for i in range(1, 8)])),
    reason=st.none(),
)


@settings(max_examples=300, deadline=None)
@given(new=st_texts, stored=st_texts, decisions=st.lists(st_decision, max_size=10))
def test_whatever_the_model_answers_the_rules_hold(new, stored, decisions):
    items, found, meter, changes = run(new, stored, decisions)

    assert [c.item.ref for c in changes] == [i.ref for i in items]  # one change per item, in order
    assert meter.calls <= 1
    stored_hashes = {content_hash(t) for t in stored}
    written = [c for c in changes if c.action != "NOOP"]
    hashes = [content_hash(c.item.text) for c in written]
    assert len(hashes) == len(set(hashes))  # never two equal texts written
    assert not set(hashes) & stored_hashes  # never a text already known
    for c, cands in zip(changes, found, strict=True):
        if max((x.similarity or 0 for x in cands), default=0) >= reconcile.NEAR_DUPLICATE:
            assert c.action == "NOOP"
        if c.action in ("UPDATE", "SUPERSEDE"):
            earlier = [i.ref for i in items[: items.index(c.item)]]
            assert (c.target_id in {x.id for x in cands}) or (c.target_ref in earlier)
        if c.action == "NOOP":
            assert c.note


@settings(max_examples=200, deadline=None)
@given(new=st_texts, stored=st_texts)
def test_the_model_is_asked_only_about_items_that_relate_to_something(new, stored):
    items = [item(f"N{i + 1}", t) for i, t in enumerate(new)]
    found = [[candidate(f"m{j}", t, it) for j, t in enumerate(stored)] for it in items]
    settled, questions = reconcile.triage(items, found, {content_hash(t) for t in stored})

    assert set(settled) | {q.item.ref for q in questions} == {i.ref for i in items}
    assert not set(settled) & {q.item.ref for q in questions}
    for q in questions:
        assert q.memories or q.earlier
        related = [m for m in q.memories if (m.similarity or 0) >= reconcile.RELATED or
                   (q.item.slot and m.slot == q.item.slot)]
        assert related or q.earlier
