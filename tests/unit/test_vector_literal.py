"""A vector goes to pgvector as its text form: every number, to six significant digits, in order."""

from __future__ import annotations

import random

import pytest

from reverie.store.db import vector_literal


@pytest.mark.parametrize("dimensions", [0, 1, 3, 384, 1536])
def test_each_number_is_written_to_six_significant_digits_in_order(dimensions):
    rng = random.Random(dimensions)
    vector = [rng.choice([0.0, 1.0, -2.5e-7, 123456789.0, rng.gauss(0, 0.05)]) for _ in range(dimensions)]
    text = vector_literal(vector)
    assert text.startswith("[") and text.endswith("]") and " " not in text
    read = [float(x) for x in text[1:-1].split(",")] if dimensions else []
    assert len(read) == dimensions
    assert all(abs(r - x) <= 5e-6 * abs(x) for r, x in zip(read, vector, strict=True))
    assert all(len(x.lstrip("-").replace(".", "").split("e")[0].lstrip("0")) <= 6 for x in text[1:-1].split(",") if x)
