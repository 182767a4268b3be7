"""The search plans benchmark runs end to end in its quick mode and records each way of each group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_the_quick_run_times_both_ways_for_every_group(tmp_path):
    out = tmp_path / "search_plans.json"
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "AWS_ENDPOINT_URL", "LLM_BASE_URL"}}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "search_plans.py"), "--quick", "--rounds", "2", "--samples", "12",
         "--shared-buffers", "128MB", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
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
