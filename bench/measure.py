"""What every benchmark records beside its figures: the machine, the date, percentiles, and the file it writes."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Iterator
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


def _records(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """`n` records of the shape a search answers with, the same ones every time."""
    rng = random.Random(seed)
    return [{"id": f"{rng.getrandbits(128):032x}", "score": rng.random(),
             "text": " ".join(rng.choice(("plans", "trip", "said", "likes", "coffee", "morning")) for _ in range(12)),
             "tags": [rng.randrange(100) for _ in range(5)]} for _ in range(n)]


# The fixed work `pace` times.
_PACE_RECORDS = _records(300)
PACE_STATEMENT = "SELECT sum(g) FROM generate_series(1, 50000) g"
PACE_RUNS = 9


def pace(postgres_url: str | None = None) -> dict[str, float]:
    """How fast this machine works at this moment: the median time of a fixed piece of Python work (JSON in and
    out, a sort, a split: a handler's kind of work) and, with a Postgres URL, of one fixed statement sent to it.

    A shared machine's speed moves, by half or more and within seconds, and the engines, the handlers and the
    benchmark all run on its cores. Recorded beside a run's timings, it says what the machine was like as they were
    taken, so a claim that one run met a slower machine than another can be checked. It is one moment, read on one
    thread: it does not predict what several processes at once will do (`paced` reads it twice)."""
    figures = {"python_ms": _median_ms(_python_work)}
    if postgres_url:
        import psycopg2

        conn = psycopg2.connect(postgres_url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                figures["postgres_ms"] = _median_ms(lambda: (cur.execute(PACE_STATEMENT), cur.fetchone()))
        finally:
            conn.close()
    return figures


@contextlib.contextmanager
def paced(postgres_url: str | None = None) -> Iterator[dict[str, dict[str, float]]]:
    """The machine's `pace` as the timings inside start ("before") and as they end ("after"), in the dict it
    yields. The speed can move within seconds: two readings bound the moment better than one."""
    speed = {"before": pace(postgres_url)}
    yield speed
    speed["after"] = pace(postgres_url)


def pace_text(speed: dict[str, dict[str, float]]) -> str:
    """`paced`'s readings as "Python before → after / Postgres before → after"."""
    return " / ".join(f"{speed['before'][work]:.2f} → {speed['after'][work]:.2f} ms"
                      for work in ("python_ms", "postgres_ms"))


def _python_work() -> None:
    for _ in range(4):
        records = json.loads(json.dumps(_PACE_RECORDS))
        records.sort(key=lambda r: (r["score"], r["id"]))
        sum(len(r["text"].split()) for r in records)


def _median_ms(work) -> float:
    work()  # once to warm up, not counted
    spent = []
    for _ in range(PACE_RUNS):
        started = time.perf_counter()
        work()
        spent.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(spent), 2)


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
