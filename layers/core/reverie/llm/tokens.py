"""Cheap, deterministic token estimates, for budgeting prompt context without a tokenizer dependency."""

from __future__ import annotations

import math

__all__ = ["estimate_tokens", "fit_to_budget"]

_CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """About one token per 4 characters, but never fewer tokens than whitespace-separated words."""
    if not text:
        return 0
    by_chars = math.ceil(len(text) / _CHARS_PER_TOKEN)
    # Short words and punctuation-heavy text tokenise worse than 4 chars/token; the word count is a floor.
    words = len(text.split())
    return max(1, by_chars, words)


def fit_to_budget(texts: list[str], budget: int) -> list[str]:
    """Keep texts in order while the running total fits `budget`; one that does not fit is skipped,
    so a later, shorter one may still be kept (callers pass texts best-first)."""
    kept: list[str] = []
    used = 0
    for text in texts:
        cost = estimate_tokens(text)
        if used + cost <= budget:
            kept.append(text)
            used += cost
    return kept
