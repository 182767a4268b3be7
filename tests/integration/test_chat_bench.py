"""The chat benchmark runs end to end in quick mode and writes well-formed results (timings are not judged here)."""

from __future__ import annotations

import json

import pytest

from tests.support.bench import run_bench

pytestmark = pytest.mark.integration


def test_the_quick_benchmark_writes_well_formed_results(tmp_path):
    out = tmp_path / "chat.json"
    done = run_bench("chat.py", "--quick", "--reply-ms", "5", "--embed-ms", "1", "--extract-ms", "5",
                     "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["memories"] == 2000 and result["turns"] == 40 and result["users"] == 20
    for name in ("overhead_ms", "post_response_ms", "async_ms", "sync_ms", "turns_overhead_ms",
                 "turns_post_response_ms"):
        assert set(result[name]) >= {"p50", "p95"}
        assert 0 <= result[name]["p50"] <= result[name]["p95"]
    assert result["statuses"] == {"200": 40} and result["memory_saved"] == 40
    assert result["turns_statuses"] == {"202": 40} and result["turns_memory_saved"] == 40
    assert result["turns_model_ms"]["max"] == 0  # recording a turn makes no model call
    assert result["publishes_before_response"] == 0
    assert set(result["pace_ms"]) == {"before", "after"} and result["pace_ms"]["after"]["postgres_ms"] > 0
    assert result["machine"]["cores"] >= 1 and result["date"]
    assert result["model_delays_ms"] == {"reply": 5, "embedding": 1, "extraction": 5}
    assert result["build"]["total_s"] >= 0 and isinstance(result["targets"]["overhead_met"], bool)
