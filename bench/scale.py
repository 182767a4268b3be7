"""Scale: search, chat and writes with 10,000, 100,000 and 1,000,000 memories in one project over 1,000 users, and
one heavy user with 100,000 memories of their own.

    python bench/scale.py [--sizes 10000 100000 1000000] [--quick]        (make bench-scale)

The memories are bulk-loaded (COPY, embeddings on every core) in steps up to each size; at each size:
- search: POST /v1/memories/search through the memory API's handler (the code path API Gateway invokes: the hybrid
  search of both halves, blend and session neighbours), per user, a query each, p50/p95;
- chat overhead: POST /v1/chat through the chat function's handler, minus the time spent in the (offline, no
  delay) model: what Reverie adds to a turn; the work after the response is drained and not counted;
- inserts: memories written one at a time through the store's insert (ten to a transaction, as a reflection
  window writes them), per second;
- disk: the memories table with its indexes and its words index (memory_words), and the whole database;
- pace: the machine's speed as the timings start and as they end (measure.paced: a fixed piece of Python work and
  a fixed statement to Postgres), what this shared machine was like as they were taken.
Then the heavy user's 100,000 memories are loaded and their searches timed.

Engines: the embedded Postgres with shared_buffers 10GB, Valkey in cluster mode, moto in its own process. RDS gives
Postgres's buffers a quarter of the instance's memory (4 GB of a db.r6g.large's 16) and the kernel's file cache holds
most of the rest, so 1.1M memories (about 7.7 GB with their indexes) are served from memory there; this machine's
kernel pages out file cache left untouched for a minute (DAMON reclaim), so here Postgres's own buffers hold them,
read in after each load (`prewarm`). Writes bench/results/scale.json.
Targets: search p95 at most 20 ms at 1M; the heavy user's at most 50 ms; chat overhead p95 at most 10 ms at 1M.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from measure import RESULTS, command, machine, now, pace_text, paced, percentiles, write

SEARCH_P95_TARGET_MS = 20.0
HEAVY_SEARCH_P95_TARGET_MS = 50.0
CHAT_OVERHEAD_P95_TARGET_MS = 10.0
HEAVY_USER = "heavy-user"
SESSION_TURNS = 12  # episodic memories of one session, for the neighbour lookups to find
RECORDED_FROM = datetime(2025, 1, 1, tzinfo=UTC)  # the memories are recorded from here, one every RECORDED_EVERY_S
RECORDED_EVERY_S = 10  # 1.1 million of them: four months


def _rows(start: int, count: int, users: list[str], seed: int) -> list[tuple[str, str, str, str, str | None, str]]:
    """(id, user, tier, text, session, recorded_at) for memories start..start+count, round-robin over users, each
    recorded RECORDED_EVERY_S after the one before (one COPY would give them all its transaction's one instant, which
    no real table holds: reads ordered by time would meet ties a real table does not have)."""
    from chat import memory_rows

    out = []
    for offset, (user, tier, text) in enumerate(memory_rows(count, users, seed + start)):
        n = start + offset
        session = f"s-{n // (len(users) * SESSION_TURNS)}" if tier == "episodic" else None
        recorded_at = (RECORDED_FROM + timedelta(seconds=n * RECORDED_EVERY_S)).isoformat()
        out.append((str(uuid.uuid4()), user, tier, f"{text} [{n}]", session, recorded_at))
    return out


def _copy_lines(args) -> str:
    chunk, project, dims, model = args
    from reverie.llm.offline import hashed_embedding
    from reverie.store.memories import content_hash

    out = io.StringIO()
    for memory_id, user, tier, text, session, recorded_at in chunk:
        vector = "[" + ",".join(f"{x:.5g}" for x in hashed_embedding(text, dims)) + "]"
        out.write("\t".join((memory_id, project, user, tier, text, content_hash(text), vector, model,
                             session or r"\N", recorded_at)) + "\n")
    return out.getvalue()


def bulk_load(owner_url: str, project: str, rows: list, dims: int, model: str, *, rebuild: bool = True,
              superuser_url: str | None = None) -> float:
    """COPY the rows in, then VACUUM ANALYZE (as autovacuum would after a load); rows a second, any index build
    included. With `rebuild` the vector index is dropped and built again after the load, as a load that grows the
    table severalfold is done; without, each row joins it as it comes (the heavy user, a tenth of the table). The words
    index is filled row by row by its trigger."""
    import contextlib

    import psycopg2
    from chat import vector_indexes_rebuilt

    started = time.perf_counter()
    chunks = [(rows[i : i + 5000], project, dims, model) for i in range(0, len(rows), 5000)]
    with vector_indexes_rebuilt(owner_url) if rebuild else contextlib.nullcontext():
        conn = psycopg2.connect(owner_url)
        try:
            with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as workers, conn.cursor() as cur:
                for lines in workers.imap(_copy_lines, chunks):
                    cur.copy_expert("COPY memories (id, project_id, user_id, tier, text, content_hash, embedding,"
                                    " embedding_model, session_id, recorded_at) FROM STDIN", io.StringIO(lines))
            conn.commit()
        finally:
            conn.close()
    conn = psycopg2.connect(owner_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE memories, memory_words")
    finally:
        conn.close()
    rate = len(rows) / (time.perf_counter() - started)
    if superuser_url:
        prewarm(superuser_url, owner_url)
    return rate


def prewarm(superuser_url: str, owner_url: str) -> None:
    """Checkpoint, then read the memories and their words, tables and indexes, into Postgres's buffers
    (pg_prewarm), as a running database has them. A bulk load goes through a small ring of buffers and leaves them
    cold; and this machine's kernel pages out file cache left untouched for a minute (DAMON reclaim), which an RDS
    instance's does not, so without this a search would read from disk what RDS serves from memory. The extension
    needs a superuser."""
    import psycopg2

    database = psycopg2.extensions.parse_dsn(owner_url)["dbname"]
    conn = psycopg2.connect(superuser_url, dbname=database)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            # The load's dirty pages written now, not by the checkpointer while searches are timed.
            cur.execute("CHECKPOINT")
            cur.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            cur.execute("SELECT sum(pg_prewarm(c.oid)) FROM pg_class c WHERE c.oid IN ('memories'::regclass,"
                        " 'memory_words'::regclass) OR c.oid IN (SELECT indexrelid FROM pg_index"
                        " WHERE indrelid IN ('memories'::regclass, 'memory_words'::regclass))")
    finally:
        conn.close()


def disk_mb(owner_url: str) -> dict[str, float]:
    import psycopg2

    with psycopg2.connect(owner_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_total_relation_size('memories'), pg_total_relation_size('memory_words'),"
                    " pg_database_size(current_database())")
        table, words, database = cur.fetchone()
    return {"memories_table_and_indexes": round(table / 2**20, 1), "memory_words": round(words / 2**20, 1),
            "database": round(database / 2**20, 1)}


def search_event(project: str, user: str, query: str) -> dict:
    from chat import _event

    return _event(project, "/v1/memories/search", {"user_id": user, "query": query, "limit": 10})


def quiet_process() -> None:
    """This process as a function's, with nothing external configured: no traces, metrics, logs or rate limits."""
    os.environ.update(POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_METRICS_DISABLED="true",
                      POWERTOOLS_METRICS_NAMESPACE="Reverie", RATE_LIMIT_PER_MINUTE="0",
                      RATE_LIMIT_MODEL_PER_MINUTE="0")
    for key in ("DATABASE_URL", "REDIS_URL", "AWS_ENDPOINT_URL", "LLM_BASE_URL"):
        os.environ.pop(key, None)
    import warnings

    warnings.filterwarnings("ignore")
    from reverie.platform.observability import logger

    logger.registered_handler.setStream(open(os.devnull, "w"))  # noqa: SIM115


def start_engines(shared_buffers: str, stops: list) -> tuple[str, str]:
    """Postgres with `shared_buffers`, moto in its own process and Valkey, set in this process's environment as the
    functions see them (runtime.clients() reaches them); the superuser's and the owner's Postgres URLs."""
    from chat import start_moto_process, start_postgres

    from reverie.platform import clients as runtime
    from reverie_dev.local import engines as local_engines

    superuser_url = os.environ["DATABASE_URL"] = start_postgres(shared_buffers, stops)
    os.environ["AWS_ENDPOINT_URL"] = start_moto_process(stops)
    started = local_engines.start()
    stops.append(started.stop)
    os.environ.update(started.environment())
    runtime.reset()
    return superuser_url, started.database_url


def time_searches(handler, project: str, queries: list[tuple[str, str]]) -> list[float]:
    from reverie_dev.local.context import LambdaContext

    for user, query in queries[:10]:  # warm: plans, connections, the first pages read
        handler(search_event(project, user, query), LambdaContext())
    took = []
    for user, query in queries:
        began = time.perf_counter()
        answer = handler(search_event(project, user, query), LambdaContext())
        took.append((time.perf_counter() - began) * 1000)
        if answer["statusCode"] != 200:
            raise RuntimeError(f"search answered {answer['statusCode']}: {answer['body'][:300]}")
    return took


def time_chats(handler, clients, timed, project: str, messages: list[tuple[str, str]]) -> list[float]:
    from chat import chat_event, empty_queues

    from reverie.platform import after_response
    from reverie_dev.local.context import LambdaContext

    overhead = []
    for n, (user, message) in enumerate(messages):
        timed.reset()
        began = time.perf_counter()
        answer = handler(chat_event(project, user, f"bench-{n % 7}", message), LambdaContext())
        elapsed = time.perf_counter() - began
        if answer["statusCode"] != 200:
            raise RuntimeError(f"chat answered {answer['statusCode']}: {answer['body'][:300]}")
        if not after_response.drain(30):
            raise RuntimeError("the work after a response did not finish within 30 s")
        if n >= 10:  # the first ten warm up
            overhead.append((elapsed - timed.spent_s) * 1000)
        if n % 50 == 0:
            empty_queues(clients)
    empty_queues(clients)
    return overhead


def time_inserts(clients, project: str, users: list[str], count: int, seed: int) -> float:
    """Memories written through the store, ten to a transaction: per second (embedding computed beforehand)."""
    from reverie.domain.tiers import Tier
    from reverie.store import memories as store

    rng = random.Random(seed)
    texts = [f"The user mentioned {rng.random():.12f} while talking about plans [{seed}-{i}]" for i in range(count)]
    vectors = clients.llm.embed(texts).vectors
    began = time.perf_counter()
    for i in range(0, count, 10):
        user = users[rng.randrange(len(users))]
        with clients.db.transaction(project) as conn, conn.cursor() as cur:
            for text, vector in zip(texts[i : i + 10], vectors[i : i + 10], strict=True):
                store.insert(cur, project, user, store.NewMemory(
                    tier=Tier.SEMANTIC, text=text, embedding=vector, embedding_model=clients.llm.embedding_model))
    return count / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="memories in the project, ascending")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--heavy", type=int, default=None, help="the heavy user's memories (default 100,000)")
    parser.add_argument("--samples", type=int, default=None, help="searches and chat turns timed per size")
    parser.add_argument("--shared-buffers", default="10GB")
    parser.add_argument("--quick", action="store_true", help="2,000 and 5,000 memories, a heavy user of 3,000")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "scale.json"))
    args = parser.parse_args(argv)
    sizes = args.sizes or ([2_000, 5_000] if args.quick else [10_000, 100_000, 1_000_000])
    heavy_n = args.heavy if args.heavy is not None else (3_000 if args.quick else 100_000)
    samples = args.samples or (60 if args.quick else 400)
    if sizes != sorted(sizes):
        print("bench-scale: --sizes must be ascending (each step loads the difference)", file=sys.stderr)
        return 2

    quiet_process()
    from chat import TimedLLM, chat_messages

    from reverie.platform import clients as runtime
    from reverie.store.projects import create_project
    from reverie_dev.backfill import Progress
    from reverie_dev.local.functions import load_handler
    from reverie_dev.local.template import Template

    stops: list = []
    results: dict[str, dict] = {}
    heavy: dict = {}
    try:
        superuser_url, owner_url = start_engines(args.shared_buffers, stops)
        clients = runtime.clients()
        timed = TimedLLM(clients.llm)
        clients.__dict__["llm"] = timed  # the handlers reach the same Clients through runtime.clients()
        functions = Template().functions()
        search, chat = load_handler(functions["MemoryApiFunction"]), load_handler(functions["ChatFunction"])
        project = "scale-" + uuid.uuid4().hex[:6]
        create_project(clients.db, project)
        users = [f"user-{i:04d}" for i in range(args.users)]
        rng = random.Random(args.seed)
        loaded = 0
        progress = Progress(sizes[-1] + heavy_n, label="scale: loading memories", unit="memories")
        for size in sizes:
            rows = _rows(loaded, size - loaded, users, args.seed)
            rate = bulk_load(owner_url, project, rows, timed.dimensions, timed.embedding_model,
                             superuser_url=superuser_url)
            progress.advance(size - loaded, f"{size:,} loaded; timing")
            loaded = size
            asked = [(rng.choice(users), m) for _, m in chat_messages(samples, users, args.seed + size)]
            with paced(owner_url) as speed:
                searched = time_searches(search, project, asked)
                overhead = time_chats(chat, clients, timed, project, asked[: samples // 2 + 10])
            inserts = time_inserts(clients, project, users, 1000 if not args.quick else 200, args.seed + size)
            disk = disk_mb(owner_url)
            results[str(size)] = {
                "search_ms": percentiles(searched), "chat_overhead_ms": percentiles(overhead),
                "inserts_per_s": round(inserts, 1), "bulk_load_rows_per_s": round(rate, 1),
                "disk_mb": round(disk["memories_table_and_indexes"] + disk["memory_words"], 1), "disk": disk,
                "memories_per_user": round(size / len(users), 1), "pace_ms": speed,
            }
        rows = _rows(0, heavy_n, [HEAVY_USER], args.seed + 99)
        bulk_load(owner_url, project, rows, timed.dimensions, timed.embedding_model, rebuild=False,
                  superuser_url=superuser_url)
        progress.advance(heavy_n, "heavy user loaded; timing")
        progress.close()
        asked = [(HEAVY_USER, m) for _, m in chat_messages(samples, [HEAVY_USER], args.seed + 1)]
        with paced(owner_url) as speed:
            heavy = {"memories": heavy_n, "project_memories": loaded + heavy_n,
                     "search_ms": percentiles(time_searches(search, project, asked)),
                     "chat_overhead_ms": percentiles(time_chats(chat, clients, timed, project,
                                                                asked[: samples // 2 + 10]))}
        heavy["pace_ms"] = speed
    finally:
        runtime.reset()
        for stop in reversed(stops):
            stop()

    top = results[str(sizes[-1])]
    result = {
        "benchmark": "search, chat overhead, inserts and disk as one project grows, and one heavy user",
        "date": now(),
        "machine": machine(),
        "command": command(argv),
        "users": args.users,
        "samples_per_size": samples,
        "engines": {"postgres_shared_buffers": args.shared_buffers, "valkey": "cluster mode",
                    "aws": "moto server in its own process", "model": "offline, no delay"},
        "sizes": results,
        "heavy_user": heavy,
        "targets": {
            "search_p95_ms_at_largest": SEARCH_P95_TARGET_MS,
            "heavy_user_search_p95_ms": HEAVY_SEARCH_P95_TARGET_MS,
            "chat_overhead_p95_ms_at_largest": CHAT_OVERHEAD_P95_TARGET_MS,
            "met": {
                "search": top["search_ms"]["p95"] <= SEARCH_P95_TARGET_MS,
                "heavy_user_search": heavy["search_ms"]["p95"] <= HEAVY_SEARCH_P95_TARGET_MS,
                "chat_overhead": top["chat_overhead_ms"]["p95"] <= CHAT_OVERHEAD_P95_TARGET_MS,
            },
        },
    }
    write(args.out, result)
    for size, figures in results.items():
        search_ms, chat_ms = figures["search_ms"], figures["chat_overhead_ms"]
        print(f"{int(size):>9,}  search p50 {search_ms['p50']:6.2f} p95 {search_ms['p95']:6.2f} ms  chat overhead "
              f"p50 {chat_ms['p50']:6.2f} p95 {chat_ms['p95']:6.2f} ms  {figures['inserts_per_s']:8.1f} inserts/s  "
              f"{figures['disk_mb']:8.1f} MB  pace {pace_text(figures['pace_ms'])}")
    print(f"heavy user ({heavy_n:,}): search p50 {heavy['search_ms']['p50']} p95 {heavy['search_ms']['p95']} ms"
          f" -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
