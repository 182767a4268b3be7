"""What every benchmark records beside its figures: the machine, the date, percentiles, and the file it writes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def machine() -> dict[str, Any]:
    """The CPU, its cores, the memory and the Python the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    memory_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory_gb, "python": platform.python_version(),
            "platform": platform.platform()}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and max in ms, rounded to 0.01 (nearest-rank p95)."""
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * (len(ordered) - 1))))]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(p95, 2), "max": round(ordered[-1], 2)}


def command(argv: list[str] | None = None) -> str:
    """The command line that produced a result, from the repository's root."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):  # a script outside the repository keeps its full path
        script = script.relative_to(ROOT)
    return " ".join(["python", str(script), *(sys.argv[1:] if argv is None else argv)])


def write(path: str | Path, result: dict[str, Any]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return out
