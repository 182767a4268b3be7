"""The search plans benchmark runs end to end in its quick mode and records each way of each group."""

from __future__ import annotations

import json

import pytest

from tests.support.bench import run_bench

pytestmark = pytest.mark.integration


def test_the_quick_run_times_both_ways_for_every_group(tmp_path):
    out = tmp_path / "search_plans.json"
    done = run_bench("search_plans.py", "--quick", "--rounds", "2", "--samples", "12", "--shared-buffers", "128MB",
                     "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads(out.read_text())
    groups = result["memories_a_user"]
    assert set(groups) == {"300", "1200", "2500"} and result["rounds"] == 2
    assert set(groups["300"]) == {"users", "function", "text"}
    assert set(groups["1200"]) == set(groups["2500"]) == {"users", "one_function", "apart"}
    for ways in groups.values():
        for way, ms in ways.items():
            if way != "users":
                assert 0 < ms["p50"] <= ms["p95"] <= ms["max"], way
    assert result["command"].startswith("python bench/search_plans.py")
