"""The fault suite runs end to end (one quick scenario here; `make bench-faults` runs them all)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reverie_dev.local.template import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_a_fault_scenario_runs_and_records_its_outcome(tmp_path):
    out = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "faults.py"), "--only", "topic",
                           "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    [scenario] = report["scenarios"]
    assert scenario["name"] == "topic refusing publishes" and scenario["jobs"] == 6
    assert (scenario["lost"], scenario["duplicated"], scenario["passed"]) == (0, 0, True)
    assert report["lost"] == 0 and report["duplicated"] == 0
