"""The narrative-read benchmark runs end to end on a few users and writes well-formed results (timings are not
judged here; bench/results/narrative.json holds the measured ones)."""

from __future__ import annotations

import json
import os

import pytest

from tests.support.bench import run_bench

pytestmark = pytest.mark.integration


def test_the_benchmark_reads_the_hot_copy_without_postgres_and_writes_its_results(engines, tmp_path):
    out = tmp_path / "narrative.json"
    # On the tests' engines (it only adds a project of its own): their URLs are in the environment.
    done = run_bench("narrative.py", "--users", "10", "--reads", "200", "--out", str(out), timeout=300,
                     env={**os.environ, **engines.environment()})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["users"] == 10 and result["reads"] == 200 and result["hot_copy_bytes"] > 1500
    for path in ("hot_copy", "recall", "postgres", "miss_and_fill"):
        assert 0 < result["read_ms"][path]["p50"] <= result["read_ms"][path]["p95"]
    assert result["postgres_reads_during_hot_reads"] == 0
    assert isinstance(result["targets"]["met"], bool)
