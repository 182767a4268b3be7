"""Token estimates and budget fitting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reverie.llm.tokens import estimate_tokens, fit_to_budget


def test_empty_text_costs_nothing():
    assert estimate_tokens("") == 0


def test_about_four_characters_per_token_rounded_up():
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 400) == 100


def test_many_short_words_count_at_least_one_token_each():
    assert estimate_tokens("a b c d e f g h") == 8  # 15 chars would say 4


@given(st.text(min_size=1))
def test_non_empty_text_costs_at_least_one_token(text):
    assert estimate_tokens(text) >= 1


@given(st.text(), st.text())
def test_estimate_is_deterministic_and_roughly_additive(a, b):
    assert estimate_tokens(a) == estimate_tokens(a)
    # Concatenation never costs more than the parts plus rounding.
    assert estimate_tokens(a + " " + b) <= estimate_tokens(a) + estimate_tokens(b) + 1


def test_a_text_that_does_not_fit_is_skipped_but_later_shorter_ones_are_kept():
    texts = ["x" * 40, "y" * 400, "z" * 8]  # 10, 100 and 2 tokens
    assert fit_to_budget(texts, 12) == ["x" * 40, "z" * 8]


def test_zero_budget_keeps_nothing_that_costs_tokens():
    assert fit_to_budget(["a", "bb"], 0) == []


def _is_subsequence(kept: list[str], texts: list[str]) -> bool:
    remaining = iter(texts)
    return all(any(k is t for t in remaining) for k in kept)


@given(st.lists(st.text(max_size=60), max_size=30), st.integers(min_value=0, max_value=120))
def test_kept_texts_fit_the_budget_in_order_as_a_subsequence(texts, budget):
    kept = fit_to_budget(texts, budget)
    assert sum(estimate_tokens(t) for t in kept) <= budget
    assert _is_subsequence(kept, texts)


@given(st.lists(st.text(max_size=60), max_size=30), st.integers(min_value=0, max_value=120))
def test_every_skipped_text_would_have_overflowed_the_budget(texts, budget):
    kept = fit_to_budget(texts, budget)
    used = 0
    kept_iter = iter(kept)
    next_kept = next(kept_iter, None)
    for text in texts:
        cost = estimate_tokens(text)
        if next_kept is text:
            used += cost
            next_kept = next(kept_iter, None)
        else:
            assert used + cost > budget  # greedy: nothing that fitted was dropped


@given(st.lists(st.text(max_size=60), max_size=30))
def test_a_large_enough_budget_keeps_everything(texts):
    assert fit_to_budget(texts, sum(estimate_tokens(t) for t in texts)) == texts
