"""The reflection benchmark runs end to end in its quick mode and writes well-formed results."""

from __future__ import annotations

import json

import pytest

from tests.support.bench import run_bench

pytestmark = pytest.mark.integration


def test_the_quick_benchmark_writes_well_formed_results_for_both_mixes(tmp_path):
    out = tmp_path / "reflect.json"
    # A few users, short windows and a fast sweep; the realistic mix on a clock compressed 300 times.
    done = run_bench("reflect.py", "--quick", "--users", "3", "--turns", "30", "--window-s", "2", "--quiet-s", "1",
                     "--sweep-s", "1", "--compression", "300", "--extract-ms", "0", "--embed-ms", "0",
                     "--out", str(out), timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads(out.read_text())
    assert result["mode"] == "quick" and set(result["mixes"]) == {"burst", "realistic"}
    burst, realistic = result["mixes"]["burst"], result["mixes"]["realistic"]
    assert burst["turns"] == 30 and burst["clock"]["reflection_window"] == {
        "reflect_window_jobs": 20, "reflect_window_s": 2, "reflect_quiet_s": 1}
    assert realistic["turns"] == realistic["turns_planned"] and realistic["clock"]["compression"] == 300
    for mix in (burst, realistic):
        assert mix["failed_turns"] == 0
        assert isinstance(mix["llm_calls_per_100_turns"], float)
        # Every turn was found in the context of a new session, pending, and the figures are ordered.
        assert mix["freshness_probes"] == {"found": mix["turns"], "not_found_within_10_s": 0}
        for figure in ("freshness_ms", "lag_ms"):
            assert mix[figure]["p50"] <= mix[figure]["p95"] <= mix[figure]["max"]
        assert mix["outcomes"] == {"learned": 3 * mix["turns"], "failed_or_dead": 0}
        assert mix["duplicates_after_redelivery"] == 0
        assert mix["redelivery"] == {"messages": 3 * mix["turns"], "new_memories": 0, "new_events": 0,
                                     "model_calls": 0}
        windows, spared = mix["check"]["windows"], mix["check"]["closed_without_a_call"]
        assert all(spared[tier] <= windows[tier] for tier in windows)
        assert mix["llm_calls"].get("extract_semantic", 0) == windows["semantic"] - spared["semantic"]
    assert set(result["targets"]["met"]) == {"realistic_llm_calls", "realistic_freshness", "duplicates"}
