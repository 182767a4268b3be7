"""Reflection throughput, lag, model calls and redelivery duplicates, through the local stack.

    python bench/reflect.py [--quick] [--users 50] [--turns 2000] [--session-turns 10] [--window-jobs 20]
                            [--window-s 300] [--extract-ms 800] [--embed-ms 30] [--backlog]
                            [--out bench/results/reflect.json]

Synthetic users chat in sessions of consecutive turns; sessions of different users interleave. A turn is one
chat exchange (the user's message and the reply), published as one reflection job, as the chat function does.
Jobs go to the SNS FIFO topic; the local runner's pollers (Lambda's SQS event source mapping: batches of up
to 10, partial batch responses, one batch at a time per queue) feed the three reflector functions, which use
the offline model and the deployed reflection window (20 jobs or 300 s; the window sweep is fired when a
window is due and nothing else would close it). Every model call is counted by wrapping the process's LLM.

- turns_per_s: turns published and learned by all three tiers, per second of the whole run;
- lag_ms: per job, from its publish to the last of its three tiers' outcomes (the window's wait included);
- llm_calls_per_100_turns: generation calls (extraction and reconciliation; embeddings are reported apart);
  the naive design makes one extraction call per turn and tier (300);
- duplicates_after_redelivery: every message is then delivered to every tier queue a second time; memories
  and memory events added by that second delivery (0 means exactly-once effect).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_CALLS_PER_100_TURNS = 20
NAIVE_CALLS_PER_100_TURNS = 300

# ---------------------------------------------------------------- synthetic users and what they say

def _words(text: str) -> list[str]:
    return text.split()


NAMES = _words("Ana Ben Carla Dev Elif Farid Greta Hugo Ines Jonas Kaito Lena Malik Nora Omar Priya Rosa Sami Uma Yara")
RELATIONS = _words("sister brother mother father cousin friend")
CITIES = _words("Lisbon Porto Berlin Kyoto Lima Oslo Nairobi Austin Seoul Dublin Lyon Krakow Hanoi Quito Perth Tunis "
                "Bergen Osaka Munich Seville Tallinn Havana Bogota Denver Zagreb Hobart Leeds Malaga")
COMPANIES = _words("Acme Globex Initech Umbrella Hooli Vandelay Stark Wayne Tyrell Soylent Cyberdyne Wonka")
HOBBIES = ("climbing", "chess", "pottery", "sailing", "running", "baking", "painting", "surfing", "gardening",
           "photography", "yoga", "rowing")
HABITS = ("take the train to work", "drink tea in the morning", "run on Sundays", "read before bed",
          "cook on weekends", "walk the dog at 7")
LANGUAGES = ("English", "Portuguese", "Spanish", "German", "French")
LENGTHS = ("short", "detailed", "concise")
SMALL_TALK = ("What's the weather like today?", "Can you recommend a good book?", "Tell me a joke.", "Thanks!",
              "How do I cook rice?", "What time is it in Tokyo?", "Any tips for sleeping better?",
              "How far is the moon?", "Explain compound interest.", "ok")


def persona(rng: random.Random) -> dict[str, str]:
    home, moved = rng.sample(CITIES, 2)
    return {"home": home, "moved": moved, "rel": rng.choice(RELATIONS), "name": rng.choice(NAMES),
            "friend": rng.choice(NAMES), "company": rng.choice(COMPANIES), "hobby": rng.choice(HOBBIES),
            "habit": rng.choice(HABITS), "language": rng.choice(LANGUAGES), "length": rng.choice(LENGTHS)}


def conversation(rng: random.Random, exchanges: int) -> tuple[list[str], dict[str, str]]:
    """One user's messages: facts, a move, repeats, rules and small talk, in a plausible order."""
    p = persona(rng)
    facts = [f"I live in {p['home']}.", f"My {p['rel']} is {p['name']}.", f"I work at {p['company']}.",
             f"I love {p['hobby']}.", f"I always {p['habit']}.", f"Please always answer in {p['language']}.",
             f"I prefer {p['length']} answers.", f"I met {p['friend']} for lunch today."]
    later = [f"I moved to {p['moved']}.", f"My {p['rel']} is {p['name']}.", f"I live in {p['moved']} now.",
             f"I always {p['habit']}."]
    first = facts[:1] + rng.sample(facts[1:], len(facts) - 1)
    said = first + later
    while len(said) < exchanges:
        said.insert(rng.randrange(1, len(said) + 1), rng.choice(SMALL_TALK))
    if exchanges < len(said):  # short conversations keep the move and its repeat, then facts
        said = first[: max(1, exchanges - 2)] + later[:2]
        said = said[:exchanges]
    return said, p


def schedule(users: list[str], per_user: dict[str, list[str]], session_turns: int, rng: random.Random
             ) -> list[tuple[str, str, str]]:
    """(user, session, message) in publish order: each user's sessions in order, users interleaved by session."""
    sessions = {u: [per_user[u][i:i + session_turns] for i in range(0, len(per_user[u]), session_turns)]
                for u in users}
    order: list[tuple[str, str, str]] = []
    cursor = dict.fromkeys(users, 0)
    while any(cursor[u] < len(sessions[u]) for u in users):
        user = rng.choice([u for u in users if cursor[u] < len(sessions[u])])
        n = cursor[user]
        order += [(user, f"s{n + 1}", message) for message in sessions[user][n]]
        cursor[user] += 1
    return order


# ---------------------------------------------------------------- measuring


class CountingLLM:
    """The process's model, counting every call by purpose (thread-safe: pollers run in threads)."""

    def __init__(self, llm):
        self.llm = llm
        self.chat_model, self.embedding_model, self.dimensions = llm.chat_model, llm.embedding_model, llm.dimensions
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._lock:
            self.calls[key] += 1

    def chat(self, messages, *, purpose="reply", **options):
        self._count(f"chat:{purpose}")
        return self.llm.chat(messages, purpose=purpose, **options)

    def structured(self, messages, schema, *, purpose, **options):
        self._count(purpose)
        return self.llm.structured(messages, schema, purpose=purpose, **options)

    def embed(self, texts, **options):
        self._count("embed")
        return self.llm.embed(texts, **options)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.calls)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))], 1)

    return {"p50": round(statistics.median(ordered), 1), "p95": at(0.95), "max": round(ordered[-1], 1)}


def wait_for(condition, timeout_s: float, what: str, every_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f}s")
        time.sleep(every_s)


def counts(db, project: str) -> dict[str, int]:
    with db.cursor(project) as cur:
        cur.execute(
            "SELECT (SELECT count(*) FROM memories WHERE project_id = %(p)s) AS memories,"
            " (SELECT count(*) FROM memories WHERE project_id = %(p)s AND superseded_at IS NULL) AS current,"
            " (SELECT count(*) FROM memory_events WHERE project_id = %(p)s) AS events,"
            " (SELECT count(*) FROM processed_jobs WHERE project_id = %(p)s AND status IN ('done', 'empty'))"
            "   AS outcomes,"
            " (SELECT count(*) FROM processed_jobs WHERE project_id = %(p)s AND status IN ('failed', 'dead'))"
            "   AS failures",
            {"p": project},
        )
        return {k: int(v) for k, v in cur.fetchone().items()}


def queues_empty(sqs, urls: list[str]) -> bool:
    for url in urls:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]):
            return False
    return True


def scenario(stack, clients, llm, plan, per_user, personas, *, backlog: bool, timeout_s: float,
             redeliver: bool) -> dict:
    """One run of the whole conversation set in a fresh project. backlog: the reflectors are paused while
    everything is published (a burst that queued up), so SQS hands out batches of whole sessions."""
    from contextlib import ExitStack

    from reverie.cache import job_markers
    from reverie.domain.memory import Turn
    from reverie.domain.tiers import TIERS
    from reverie.jobs import delivery
    from reverie.jobs.message import make_job
    from reverie.store import ALL_PROJECTS, held_jobs
    from reverie.store.projects import create_project

    project = "bench-" + uuid.uuid4().hex[:6]
    create_project(clients.db, project)
    topic = clients.settings.reflection_topic_arn
    queue_urls = [clients.settings.queue_url(t) for t in TIERS]
    sqs = stack.client("sqs")
    reflectors = [p for name, p in stack.pollers.items() if "Reflector" in name]
    calls_before = llm.snapshot()

    published: dict[str, float] = {}
    made = []
    base = datetime.now(UTC) - timedelta(days=1)
    with ExitStack() as paused:
        if backlog:
            for poller in reflectors:
                paused.enter_context(poller.paused())
        started = time.time()
        for i, (user, session, message) in enumerate(plan):
            at = base + timedelta(seconds=10 * i)
            turns = [Turn(role="user", content=message, created_at=at),
                     Turn(role="assistant", content="Noted.", created_at=at + timedelta(seconds=1))]
            job = make_job(project_id=project, user_id=user, session_id=session, turns=turns)
            job_markers.remember(clients.valkey, job)
            delivery.send(clients.sns, topic, job)
            published[job.job_id] = time.time()
            made.append(job)
        publish_s = time.time() - started
    expected = len(made) * len(TIERS)

    def finished_or_swept() -> bool:
        if sum(counts(clients.db, project)[k] for k in ("outcomes", "failures")) >= expected:
            return True
        # A window only the sweep can close (its user said nothing more): fire the sweep once it is due, as
        # the every-minute schedule would.
        if queues_empty(sqs, queue_urls):
            with clients.db.transaction(ALL_PROJECTS) as conn, conn.cursor() as cur:
                due = held_jobs.due_windows(cur, clients.settings.reflect_window_s)
            if due:
                stack.run_schedule("windows")
        return False

    wait_for(finished_or_swept, timeout_s, "all tiers to finish", every_s=0.5)
    finished = time.time()
    first_pass = counts(clients.db, project)
    calls = llm.snapshot() - calls_before

    with clients.db.cursor(project) as cur:
        cur.execute("SELECT job_id, extract(epoch FROM max(processed_at)) AS at FROM processed_jobs"
                    " WHERE project_id = %s GROUP BY job_id", (project,))
        done_at = {r["job_id"]: float(r["at"]) for r in cur.fetchall()}
    lag_ms = [max(0.0, (done_at[j] - published[j]) * 1000) for j in published if j in done_at]

    second_pass, redelivery_calls = first_pass, 0
    if redeliver:
        print("  delivering every message a second time...", file=sys.stderr)
        before = llm.snapshot()
        for url in queue_urls:
            for start in range(0, len(made), 10):
                sqs.send_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(k), "MessageBody": job.model_dump_json(), "MessageGroupId": job.group_id,
                     "MessageDeduplicationId": "again-" + job.job_id}
                    for k, job in enumerate(made[start:start + 10])])
        wait_for(lambda: queues_empty(sqs, queue_urls), timeout_s, "the second delivery to drain", every_s=0.5)
        time.sleep(1.5)  # a batch received just before the queues looked empty finishes its transaction
        wait_for(lambda: queues_empty(sqs, queue_urls), timeout_s, "the second delivery to drain", every_s=0.5)
        second_pass = counts(clients.db, project)
        redelivery_calls = sum((llm.snapshot() - before).values())

    with clients.db.cursor(project) as cur:
        cur.execute("SELECT user_id, text FROM memories WHERE project_id = %s AND tier = 'semantic'"
                    " AND superseded_at IS NULL AND metadata->>'slot' = 'home_city'", (project,))
        homes: dict[str, list[str]] = {}
        for row in cur.fetchall():
            homes.setdefault(row["user_id"], []).append(row["text"])
        cur.execute("SELECT count(*) AS n FROM memories WHERE project_id = %s AND superseded_at IS NOT NULL",
                    (project,))
        superseded = int(cur.fetchone()["n"])
        cur.execute("SELECT tier, count(*) AS n FROM memories WHERE project_id = %s AND superseded_at IS NULL"
                    " GROUP BY tier", (project,))
        by_tier = {r["tier"]: int(r["n"]) for r in cur.fetchall()}
    moved = [u for u in per_user if f"I moved to {personas[u]['moved']}." in per_user[u]]
    homes_right = sum(1 for u in moved if homes.get(u) == [f"User lives in {personas[u]['moved']}"])

    turns = len(made)
    generation = sum(n for k, n in calls.items() if k != "embed")
    extraction = {t.value: calls.get(f"extract_{t.value}", 0) for t in TIERS}
    duplicates = (second_pass["memories"] - first_pass["memories"]) + (second_pass["events"] - first_pass["events"])
    return {
        "turns": turns,
        "jobs": len(made),
        "publish_s": round(publish_s, 2),
        "elapsed_s": round(finished - started, 2),
        "turns_per_s": round(turns / (finished - started), 1),
        "lag_ms": percentiles(lag_ms),
        "llm_calls_per_100_turns": round(100 * generation / turns, 2),
        "embed_calls_per_100_turns": round(100 * calls.get("embed", 0) / turns, 2),
        "llm_calls": dict(sorted(calls.items())),
        "jobs_per_extraction_call": {t: round(len(made) / n, 2) if n else None for t, n in extraction.items()},
        "duplicates_after_redelivery": duplicates if redeliver else None,
        "redelivery": {
            "messages": len(made) * len(TIERS),
            "new_memories": second_pass["memories"] - first_pass["memories"],
            "new_events": second_pass["events"] - first_pass["events"],
            "model_calls": redelivery_calls,
        } if redeliver else None,
        "outcomes": {"learned": first_pass["outcomes"], "failed_or_dead": first_pass["failures"]},
        "memories": {"current_by_tier": by_tier, "superseded": superseded},
        "quality": {"users_who_moved": len(moved), "current_home_is_the_new_city": homes_right},
    }


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 turns from 10 users (a smoke run)")
    parser.add_argument("--users", type=int, default=None, help="users (default 50)")
    parser.add_argument("--turns", type=int, default=None, help="chat turns, one job each (default 2,000)")
    parser.add_argument("--session-turns", type=int, default=10, help="turns per chat session")
    parser.add_argument("--window-jobs", type=int, default=20, help="reflection window: jobs (template default)")
    parser.add_argument("--window-s", type=int, default=300, help="reflection window: seconds (template default)")
    parser.add_argument("--backlog", action="store_true",
                        help="also run the burst case: everything published before the reflectors start")
    parser.add_argument("--extract-ms", type=float, default=800, help="offline model delay per structured call")
    parser.add_argument("--embed-ms", type=float, default=30, help="offline model delay per embedding call")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the queues to drain")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "reflect.json"))
    args = parser.parse_args(argv)
    users_n = args.users or (10 if args.quick else 50)
    turns_n = args.turns or (200 if args.quick else 2000)
    exchanges = max(1, turns_n // users_n)

    os.environ.update(POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_METRICS_NAMESPACE="Reverie",
                      POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="WARNING",
                      OFFLINE_EXTRACT_DELAY_MS=str(args.extract_ms), OFFLINE_EMBED_DELAY_MS=str(args.embed_ms),
                      REFLECT_WINDOW_JOBS=str(args.window_jobs), REFLECT_WINDOW_S=str(args.window_s))
    for key in ("DATABASE_URL", "REDIS_URL", "AWS_ENDPOINT_URL", "LLM_BASE_URL"):
        os.environ.pop(key, None)  # always the embedded engines and the offline model
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("reverie.local").setLevel(logging.ERROR)
    from reverie.platform import clients as runtime
    from reverie.platform.observability import logger
    from reverie_dev.local.runner import LocalStack

    logger.registered_handler.setStream(open(os.devnull, "w"))  # noqa: SIM115

    rng = random.Random(args.seed)
    users = [f"user-{i:02d}" for i in range(users_n)]
    per_user, personas = {}, {}
    for user in users:
        per_user[user], personas[user] = conversation(rng, exchanges)
    plan = schedule(users, per_user, args.session_turns, rng)

    print(f"starting the local stack ({len(plan)} turns, {users_n} users)...", file=sys.stderr)
    stack = LocalStack(run_schedules=False, retry_delay_s=1.0, poll_wait_s=1)
    stack.start(port=0)
    try:
        clients = runtime.clients()
        llm = CountingLLM(clients.llm)
        clients.__dict__["llm"] = llm  # the functions reach the same Clients through runtime.clients()
        print("live: publishing while the reflectors run...", file=sys.stderr)
        live = scenario(stack, clients, llm, plan, per_user, personas, backlog=False, timeout_s=args.timeout,
                        redeliver=True)
        backlog = None
        if args.backlog:
            print("backlog: publishing everything first, then starting the reflectors...", file=sys.stderr)
            backlog = scenario(stack, clients, llm, plan, per_user, personas, backlog=True,
                               timeout_s=args.timeout, redeliver=False)
    finally:
        stack.stop()

    result = {
        "benchmark": "reflection: three tiers through the local stack, offline model",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "mode": "quick" if args.quick else "full",
        "users": users_n,
        "turns": live["turns"],
        "turn": "one chat exchange (a user message and its reply), published as one reflection job",
        "session_turns": args.session_turns,
        "reflection_window": {"jobs": args.window_jobs, "seconds": args.window_s},
        "model_delays_ms": {"extraction": args.extract_ms, "embedding": args.embed_ms},
        "turns_per_s": live["turns_per_s"],
        "lag_ms": live["lag_ms"],
        "llm_calls_per_100_turns": live["llm_calls_per_100_turns"],
        "duplicates_after_redelivery": live["duplicates_after_redelivery"],
        "naive_llm_calls_per_100_turns": NAIVE_CALLS_PER_100_TURNS,
        "live": live,
        "backlog": backlog,
        "targets": {
            "llm_calls_per_100_turns": TARGET_CALLS_PER_100_TURNS,
            "llm_calls_met": live["llm_calls_per_100_turns"] <= TARGET_CALLS_PER_100_TURNS,
            "duplicates_after_redelivery": 0,
            "duplicates_met": live["duplicates_after_redelivery"] == 0,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    summary = {k: result[k] for k in ("turns", "turns_per_s", "lag_ms", "llm_calls_per_100_turns",
                                      "duplicates_after_redelivery")}
    if backlog:
        summary["backlog"] = {k: backlog[k] for k in ("turns_per_s", "lag_ms", "llm_calls_per_100_turns")}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
