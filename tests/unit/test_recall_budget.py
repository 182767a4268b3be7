"""Fitting recall into a token budget: shares, what flows between parts, what each part keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from reverie.chat.context import PARTS, SHARES, allocate, clip_to_tokens, fit
from reverie.domain.memory import ScoredMemory, Turn
from reverie.domain.tiers import Tier
from reverie.llm import estimate_tokens

demands = st.fixed_dictionaries({part: st.integers(0, 5000) for part in PARTS})
budgets = st.integers(0, 8000)


def memory(text: str, *, tier: Tier = Tier.SEMANTIC, age_s: int = 0, memory_id: str | None = None) -> ScoredMemory:
    return ScoredMemory(id=memory_id or text, user_id="ana", tier=tier, text=text,
                        created_at=datetime(2026, 1, 1, tzinfo=UTC) - timedelta(seconds=age_s))


@given(budgets, demands)
def test_allocation_never_exceeds_the_budget_nor_what_a_part_needs(budget, demand):
    granted = allocate(budget, demand)
    assert sum(granted.values()) <= budget
    assert all(0 <= granted[p] <= demand[p] for p in PARTS)


@given(budgets, demands)
def test_everything_is_granted_when_it_fits(budget, demand):
    if sum(demand.values()) <= budget:
        assert allocate(budget, demand) == demand


@given(budgets, demands)
def test_the_whole_budget_is_used_when_the_parts_need_more(budget, demand):
    if sum(demand.values()) >= budget:
        assert sum(allocate(budget, demand).values()) == budget


@given(st.integers(100, 8000), demands)
def test_a_part_that_needs_more_than_its_share_gets_at_least_its_share(budget, demand):
    granted = allocate(budget, demand)
    for part in PARTS:
        if demand[part] >= budget:
            assert granted[part] >= int(budget * SHARES[part])


def test_an_unused_share_flows_to_the_parts_that_need_more():
    granted = allocate(1000, {"narrative": 0, "rules": 0, "memories": 5000, "recent_turns": 5000})
    # memories and turns split the whole budget in proportion to their shares (40:15)
    assert granted["memories"] + granted["recent_turns"] == 1000
    assert granted["memories"] > 400 and granted["recent_turns"] > 150
    assert abs(granted["memories"] / granted["recent_turns"] - 40 / 15) < 0.05


def test_a_small_need_is_met_in_full_and_its_leftover_goes_to_others():
    granted = allocate(1000, {"narrative": 30, "rules": 5000, "memories": 5000, "recent_turns": 5000})
    assert granted["narrative"] == 30
    assert sum(granted.values()) == 1000


@given(st.text(max_size=3000), st.integers(0, 400))
def test_a_clipped_text_fits_its_budget(text, budget):
    clipped = clip_to_tokens(text, budget)
    assert estimate_tokens(clipped) <= budget
    if estimate_tokens(text) <= budget:
        assert clipped == text


def test_fit_keeps_the_newest_turns_in_order_and_best_first_memories():
    turns = [Turn(role="user" if i % 2 == 0 else "assistant", content=f"turn number {i} " + "word " * 40)
             for i in range(12)]
    memories = [memory(f"memory {i} " + "fact " * 30) for i in range(10)]
    context = fit(narrative=None, rules=[], memories=memories, recent_turns=turns, max_tokens=300)
    assert context.recent_turns == turns[-len(context.recent_turns):]  # a suffix: the newest, oldest first
    assert 0 < len(context.recent_turns) < len(turns)
    assert context.memories == memories[: len(context.memories)]
    assert context.tokens <= 300


def test_fit_counts_the_tokens_it_keeps():
    rules = [memory("Answer in short bullet points", tier=Tier.PROCEDURAL)]
    context = fit(narrative="Ana lives in Porto with her sister.", rules=rules, memories=[memory("Likes ramen")],
                  recent_turns=[Turn(role="user", content="hello there")], max_tokens=1500, narrative_version=3)
    expected = sum(estimate_tokens(t) for t in ("Ana lives in Porto with her sister.",
                                                "Answer in short bullet points", "Likes ramen", "hello there"))
    assert context.tokens == expected
    assert context.narrative_version == 3


def test_a_narrative_over_its_share_is_clipped_not_dropped():
    context = fit(narrative="word " * 2000, rules=[], memories=[memory("m " * 400)], recent_turns=[],
                  max_tokens=1000)
    assert context.narrative and context.narrative.endswith("…")
    assert estimate_tokens(context.narrative) <= 1000 - estimate_tokens(context.memories[0].text)
