"""The scale benchmark runs end to end in its quick mode and writes well-formed results; the report reads them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from tests.support.bench import ROOT, run_bench

pytestmark = pytest.mark.integration


def test_the_quick_scale_run_records_every_size_and_the_heavy_user(tmp_path):
    out = tmp_path / "scale.json"
    done = run_bench("scale.py", "--sizes", "1000", "3000", "--users", "50", "--heavy", "1500", "--samples", "30",
                     "--shared-buffers", "128MB", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads(out.read_text())
    assert set(result["sizes"]) == {"1000", "3000"} and result["users"] == 50
    for size, figures in result["sizes"].items():
        assert figures["memories_per_user"] == int(size) / 50
        for figure in ("search_ms", "chat_overhead_ms"):
            assert 0 < figures[figure]["p50"] <= figures[figure]["p95"] <= figures[figure]["max"]
        assert figures["inserts_per_s"] > 0 and figures["disk_mb"] > 0
        for reading in ("before", "after"):
            assert figures["pace_ms"][reading]["python_ms"] > 0 and figures["pace_ms"][reading]["postgres_ms"] > 0
    # The table grows with what was loaded into it.
    assert result["sizes"]["3000"]["disk"]["memories_table_and_indexes"] > result["sizes"]["1000"]["disk"][
        "memories_table_and_indexes"]
    assert result["heavy_user"]["memories"] == 1500 and result["heavy_user"]["project_memories"] == 4500
    assert set(result["heavy_user"]["pace_ms"]["after"]) == {"python_ms", "postgres_ms"}
    assert set(result["targets"]["met"]) == {"search", "heavy_user_search", "chat_overhead"}
    assert result["machine"]["cores"] == os.cpu_count() and result["command"].startswith("python bench/scale.py")


def test_the_report_sets_each_figure_against_its_target_and_lists_what_did_not_run(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "chat.json").write_text(json.dumps({
        "date": "2026-11-30T10:00:00+00:00", "benchmark": "chat",
        "overhead_ms": {"p95": 12.5}, "turns_overhead_ms": {"p95": 3.0}, "async_over_sync_p95": 0.2}))
    (results / "coldstart.json").write_text(json.dumps({
        "date": "2026-11-29T10:00:00+00:00", "functions": {"ChatFunction": {"import_ms": 612.0}}}))
    rendered = _rendered(results)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in rendered.splitlines() if line.startswith("| ")}
    assert "| 12.5 ms | <= 15 ms | yes | 2026-11-30 | `make bench-chat` |" in rows[
        "chat: overhead a turn adds, p95 (100k memories)"]
    assert "| 0.2 | <= 0.15 | **no** |" in rows["chat: async p95 over synchronous tiers p95"]
    assert "| 612 ms | < 600 ms | **no** | 2026-11-29 |" in rows["cold start: the chat function's import"]
    assert "| not run | <= 20 ms |" in rows["scale: search p95 at the largest size"]
    assert "Machine: " in rendered and "cores" in rendered

    # The machine's pace is read at the largest size, not the first one in the file.
    (results / "scale.json").write_text(json.dumps({"date": "2026-11-30T12:00:00+00:00", "sizes": {
        "100000": {"pace_ms": {"before": {"python_ms": 9.0, "postgres_ms": 20.0},
                               "after": {"python_ms": 9.5, "postgres_ms": 21.0}}},
        "1000000": {"pace_ms": {"before": {"python_ms": 6.25, "postgres_ms": 12.5},
                                "after": {"python_ms": 10.0, "postgres_ms": 13.0}}}}}))
    pace = next(line for line in _rendered(results).splitlines() if line.startswith("| scale: the machine's pace"))
    assert "| 6.25 → 10.00 ms / 12.50 → 13.00 ms |" in pace


def test_the_pace_times_its_fixed_work_and_the_statement_it_sends(monkeypatch, engines):
    postgres_url = engines.database_url
    spec = importlib.util.spec_from_file_location("measure_bench", ROOT / "bench" / "measure.py")
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)

    paced = measure.pace(postgres_url)
    assert set(paced) == {"python_ms", "postgres_ms"} and paced["python_ms"] > 0 and paced["postgres_ms"] > 0
    # Without a Postgres URL only the Python work is timed.
    assert set(measure.pace()) == {"python_ms"}
    # Work made slower by 20 ms a run reads at least that much slower: the pace is the work's median time.
    fixed = measure._python_work
    monkeypatch.setattr(measure, "_python_work", lambda: (fixed(), time.sleep(0.02)))
    assert measure.pace()["python_ms"] >= 20.0
    monkeypatch.setattr(measure, "PACE_STATEMENT", "SELECT pg_sleep(0.02)")
    assert measure.pace(postgres_url)["postgres_ms"] >= 20.0
    # paced reads the pace as the work inside starts and again as it ends (slowed by more than the fixed work
    # takes on a slow moment of this machine, so the two readings cannot overlap).
    slow = False
    monkeypatch.setattr(measure, "_python_work", lambda: (fixed(), slow and time.sleep(0.1)))
    with measure.paced() as speed:
        assert set(speed) == {"before"}
        slow = True
    assert speed["before"]["python_ms"] < 100.0 <= speed["after"]["python_ms"]


def _rendered(results) -> str:
    """bench/report.py's table over the files in `results`, rendered in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; import report; "
                               f"sys.stdout.write(report.render(Path({str(results)!r})))"],
        cwd=ROOT / "bench", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
