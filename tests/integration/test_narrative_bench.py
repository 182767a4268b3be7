"""The narrative-read benchmark runs end to end on a few users and writes well-formed results (timings are not
judged here; bench/results/narrative.json holds the measured ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_reads_the_hot_copy_without_postgres_and_writes_its_results(engines, tmp_path):
    out = tmp_path / "narrative.json"
    # On the tests' engines (it only adds a project of its own): their URLs are in the environment.
    env = {**os.environ, **engines.environment()}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "narrative.py"), "--users", "10", "--reads", "200",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["users"] == 10 and result["reads"] == 200 and result["hot_copy_bytes"] > 1500
    for path in ("hot_copy", "recall", "postgres", "miss_and_fill"):
        assert 0 < result["read_ms"][path]["p50"] <= result["read_ms"][path]["p95"]
    assert result["postgres_reads_during_hot_reads"] == 0
    assert isinstance(result["targets"]["met"], bool)
