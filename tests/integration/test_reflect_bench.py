"""The reflection benchmark runs end to end in its quick mode and writes well-formed results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_the_quick_benchmark_writes_well_formed_results(tmp_path):
    out = tmp_path / "reflect.json"
    # Its own engines and local stack: none of this session's engine URLs leak into it.
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "REDIS_URL", "AWS_ENDPOINT_URL", "LLM_BASE_URL"}}
    done = subprocess.run(
        # Ten turns per user never fill a window of 20: the sweep closes them after 2 s.
        [sys.executable, str(ROOT / "bench" / "reflect.py"), "--quick", "--users", "4", "--turns", "40",
         "--window-s", "2", "--extract-ms", "0", "--embed-ms", "0", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads(out.read_text())
    assert result["mode"] == "quick" and result["turns"] == 40 and result["live"]["jobs"] == 40
    assert result["reflection_window"] == {"jobs": 20, "seconds": 2}
    assert isinstance(result["turns_per_s"], float) and result["turns_per_s"] > 0
    assert set(result["lag_ms"]) == {"p50", "p95", "max"}
    assert result["lag_ms"]["p50"] <= result["lag_ms"]["p95"] <= result["lag_ms"]["max"]
    assert isinstance(result["llm_calls_per_100_turns"], float)
    assert result["duplicates_after_redelivery"] == 0
    assert result["live"]["outcomes"] == {"learned": 120, "failed_or_dead": 0}
    # Each user's ten jobs were learned together: one extraction call per user and tier.
    assert result["live"]["jobs_per_extraction_call"] == {"episodic": 10.0, "semantic": 10.0, "procedural": 10.0}
    assert result["live"]["redelivery"]["model_calls"] == 0
    assert result["live"]["redelivery"]["messages"] == 120
