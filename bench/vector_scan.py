"""Per-user vector search at scale over 100,000 memories of 20 users: `memory_search.nearest` (50 ids, best first) on
the half-precision covering index of migration 0004; the same scan over full-precision vectors with the covering
index of migration 0003, for comparison; `nearest` without a covering index (the scope index and heap reads);
and `recall.rank` vector-only (nearest, then the 10 best rows fetched).

    python bench/vector_scan.py [--memories 100000] [--users 20] [--queries 200]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIMENSIONS = 384


def unit_vector(rng: random.Random) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(DIMENSIONS)]
    norm = sum(x * x for x in v) ** 0.5
    return [x / norm for x in v]


def timings(run, queries: int) -> dict[str, float]:
    samples = []
    for i in range(queries + 20):
        started = time.perf_counter()
        run(i)
        if i >= 20:  # the first ones warm the cache
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50": round(statistics.median(samples), 2), "p95": round(samples[int(len(samples) * 0.95)], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "vector_scan.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    import psycopg2

    from reverie.chat import recall
    from reverie.domain.tiers import Tier
    from reverie.store import Database, memory_search
    from reverie.store.db import vector_literal
    from reverie.store.projects import create_project
    from reverie_dev.local import engines as local_engines

    started = local_engines.start()  # migrated, with the functions' login role
    try:
        # Loaded by the owner (COPY does not take row-level security); searched as the functions search.
        owner = Database(started.database_url, max_connections=1)
        db = Database(started.app_database_url, max_connections=2)
        create_project(owner, "bench")
        rng = random.Random(7)
        tiers = [t.value for t in Tier]
        load_started = time.perf_counter()
        out = io.StringIO()
        for i in range(args.memories):
            out.write("\t".join((str(uuid.uuid4()), "bench", f"u{i % args.users}", tiers[i % 3], f"memory {i}",
                                 uuid.uuid4().hex, vector_literal(unit_vector(rng)))) + "\n")
        out.seek(0)
        with owner.transaction("bench") as conn, conn.cursor() as cur:
            cur.copy_expert("COPY memories (id, project_id, user_id, tier, text, content_hash, embedding)"
                            " FROM STDIN", out)
        admin = psycopg2.connect(started.database_url)
        admin.autocommit = True
        admin.cursor().execute("VACUUM ANALYZE memories")  # index-only scans need the visibility map
        load_s = time.perf_counter() - load_started

        queries = [unit_vector(rng) for _ in range(16)]
        scope = {"tiers": [Tier.EPISODIC, Tier.SEMANTIC]}

        def nearest(i: int) -> None:
            memory_search.nearest(db, "bench", f"u{i % args.users}", queries[i % 16], k=50, **scope)

        def ranked(i: int) -> None:
            recall.rank(db, "bench", f"u{i % args.users}", query="", embedding=queries[i % 16], limit=10, **scope)

        def nearest_full(i: int) -> None:
            # `nearest` as it was before half precision: the same scan on the full vectors.
            with db.read("bench", cursor_factory=None) as cur:
                cur.execute(
                    "SELECT id::text, recorded_at, embedding <=> %s::vector AS d FROM memories"
                    " WHERE project_id = 'bench' AND user_id = %s AND tier = ANY(%s) AND superseded_at IS NULL"
                    " AND embedding IS NOT NULL ORDER BY d LIMIT 50",
                    (vector_literal(queries[i % 16]), f"u{i % args.users}", ["episodic", "semantic"]),
                )
                cur.fetchall()

        search_ms = {"nearest_half_covering_index": timings(nearest, args.queries),
                     "rank_vector_only_top10": timings(ranked, args.queries)}
        admin.cursor().execute("CREATE INDEX full_vectors ON memories (project_id, user_id, tier)"
                               " INCLUDE (id, recorded_at, embedding) WHERE superseded_at IS NULL")
        admin.cursor().execute("DROP INDEX memories_user_half_vectors_by_model")
        admin.cursor().execute("VACUUM ANALYZE memories")
        search_ms["full_precision_covering_index"] = timings(nearest_full, args.queries)
        admin.cursor().execute("DROP INDEX full_vectors")
        search_ms["nearest_scope_index_and_heap"] = timings(nearest, args.queries)
        admin.close()
    finally:
        started.stop()

    result = {
        "benchmark": "per-user vector search (memory_search.nearest, recall.rank vector-only)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "memories": args.memories, "users": args.users, "queries": args.queries, "dimensions": DIMENSIONS,
        "load_s": round(load_s, 1),
        "search_ms": search_ms,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["search_ms"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
