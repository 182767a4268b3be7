"""Reflection on two traffic mixes, through the local stack: model calls, freshness, lag, redelivery duplicates.

    python bench/reflect.py [--quick] [--mix burst|realistic|both] [--users 50] [--turns 2000]
                            [--session-turns 10] [--compression 30] [--window-jobs 20] [--window-s 300]
                            [--quiet-s 60] [--extract-ms 800] [--embed-ms 30] [--out bench/results/reflect.json]

Every turn is one chat exchange, sent to POST /v1/chat of the local stack (API Gateway, the authorizer, the chat
function with the offline model), which parks its reflection job and publishes it after answering. The local
runner's pollers (Lambda's SQS event source mapping: batches of up to 10, partial batch responses, one batch at a
time per queue) feed the three reflector functions, with the deployed reflection window (20 jobs, 600 s, or the
user quiet for 60 s) and the cheap check before each model call; the window sweep fires as its schedule does.

Two mixes, each in a fresh project:

- burst: today's benchmark. 50 users' conversations of 40 turns (facts, a move, repeats, rules and small talk),
  in sessions of 10 turns, the sessions of different users interleaved, sent one after the other as fast as the
  stack answers, on the real clock (windows as deployed, the sweep every 60 s).
- realistic: users who come back. Each user talks in sessions of 3-15 turns, a few seconds apart (5-45 s), and
  comes back hours later (1-24 h). Most sessions are tasks and questions (cooking, code, travel, writing...) with
  follow-ups; a quarter open with a task about the user's own life ("I have a job interview tomorrow..."), a
  quarter tell a fact about the user (where they live, then a move, their family, work, hobbies), one in ten a
  preference or habit. The clock is compressed (--compression, 15: one real minute is 4 s), and so are the
  windows (600 s -> 40 s, quiet 60 s -> 4 s), the sweep's period and the model's delays, so that every duration
  keeps its proportion to the others. A pause between sessions is cut to the quiet time plus two sweep periods
  (3 minutes): any pause that long closes the window by then, as an hours-long one does.

Figures per mix:
- llm_calls_per_100_turns: the reflectors' generation calls (extraction and reconciliation; embeddings apart) per
  100 turns; the naive design makes one extraction call per turn and tier (300);
- freshness_ms: from a turn's reply to the moment its words are in GET /v1/context of a new session (marked
  pending), polled right away for every turn (wall clock: the read path is not compressed);
- lag_ms: from a turn's reply to the last of its three tiers' outcomes (for the realistic mix on the simulated
  clock, that is wall time x compression; its wall time is given too);
- duplicates_after_redelivery: every job is then delivered to every tier queue a second time; memories and
  memory events added by that second delivery (0 means exactly-once effect);
- check: windows per tier, and those closed by the cheap check without a model call.
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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_CALLS_PER_100_TURNS = 20  # on the realistic mix
TARGET_FRESHNESS_P95_MS = 1000
NAIVE_CALLS_PER_100_TURNS = 300
SWEEP_PERIOD_S = 60  # the window sweep's schedule: rate(1 minute)
MIN_SWEEP_PERIOD_S = 0.5  # on a compressed clock, the sweep fires no more often than this

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

# The realistic mix: what people ask an assistant, and how they follow up.
TASKS = (
    "How do I cook rice?", "Explain compound interest.", "What time is it in Tokyo?", "How far is the moon?",
    "Write a haiku about autumn.", "What's the difference between TCP and UDP?",
    "Translate 'good morning' into Italian.", "How many calories are in an apple?", "Summarise the plot of Hamlet.",
    "What's the capital of Australia?", "How does a heat pump work?", "Give me three ideas for a birthday party.",
    "Tell me a joke.", "What should I pack for a weekend hike?", "Can you explain recursion with an example?",
    "Is it going to rain tomorrow?", "Recommend a podcast about science.", "How long should I boil an egg?",
    "What's a good stretch for back pain?", "How do I write a cover letter?", "What's a healthy breakfast?",
    "Can you recommend a good book?", "How do I fix a leaking tap?", "What is machine learning?",
    "Draft a polite reminder email about an unpaid invoice.", "How do vaccines work?",
    "What's the best way to learn a language?", "Convert 5 miles to kilometres.", "Why is the sky blue?",
    "Suggest a name for a bakery.",
)
FOLLOW_UPS = (
    "Thanks!", "ok", "Can you give an example?", "Why?", "What about the second one?", "That makes sense.",
    "Great, thanks a lot!", "And how long does that take?", "Could you explain that more simply?", "Perfect.",
    "I tried that but it didn't work.", "I see, thanks.", "Can you make it shorter?", "What else?",
    "Is there a cheaper option?", "How about a vegetarian version?", "Say more about the first point.",
)
# Tasks that mention the user's own life in passing.
OWN_TASKS = (
    "I'm planning a trip to {city}, what should I see?", "My {rel} {name} has a birthday next week, any gift ideas?",
    "I have a job interview tomorrow, any tips?", "I'm cooking for six people tonight, what can I make?",
    "Can you help me write a thank-you note to my {rel}?", "My laptop is really slow, what can I do?",
)
# The realistic mix: the share of sessions (after the first) that tell a fact about the user, a preference or habit,
# or start with a task about the user's own life.
P_FACT, P_RULE, P_OWN_TASK = 0.25, 0.10, 0.25


def persona(rng: random.Random) -> dict[str, str]:
    home, moved = rng.sample(CITIES, 2)
    return {"home": home, "moved": moved, "rel": rng.choice(RELATIONS), "name": rng.choice(NAMES),
            "friend": rng.choice(NAMES), "company": rng.choice(COMPANIES), "hobby": rng.choice(HOBBIES),
            "habit": rng.choice(HABITS), "language": rng.choice(LANGUAGES), "length": rng.choice(LENGTHS),
            "city": rng.choice(CITIES)}


def conversation(rng: random.Random, exchanges: int) -> tuple[list[str], dict[str, str]]:
    """The burst mix: one user's messages (facts, a move, repeats, rules and small talk) in a plausible order."""
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
    """The burst mix: (user, session, message) in sending order, each user's sessions in order, users interleaved
    by session."""
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


def returning_user(rng: random.Random, turns: int) -> tuple[list[list[str]], dict[str, str]]:
    """The realistic mix: one user's sessions (3-15 turns each, `turns` in all), mostly tasks and follow-ups. A
    session tells a fact about the user with P_FACT (where they live first, and a move after that), a preference
    or habit with P_RULE, and opens with a task about the user's own life with P_OWN_TASK."""
    p = persona(rng)
    others = [f"My {p['rel']} is {p['name']}.", f"I work at {p['company']}.", f"I love {p['hobby']}.",
              f"I met {p['friend']} for lunch today.", f"My {p['rel']} {p['name']} lives in {p['city']}."]
    rng.shuffle(others)
    facts = [f"I live in {p['home']}.", f"I moved to {p['moved']}.", *others]
    rules = [f"Please always answer in {p['language']}.", f"I prefer {p['length']} answers.",
             f"I always {p['habit']}."]
    rng.shuffle(rules)
    lengths: list[int] = []
    while sum(lengths) < turns:
        lengths.append(rng.randint(3, 15))
    lengths[-1] -= sum(lengths) - turns
    if lengths[-1] < 3 and len(lengths) > 1:
        lengths[-2] += lengths.pop()
    sessions = []
    for length in lengths:
        own = rng.random() < P_OWN_TASK
        said = [rng.choice(OWN_TASKS).format(**p) if own else rng.choice(TASKS)]
        said += [rng.choice(FOLLOW_UPS) if rng.random() < 0.6 else rng.choice(TASKS) for _ in range(length - 1)]
        personal = []
        if rng.random() < P_FACT and facts:
            personal.append(facts.pop(0))
        if rng.random() < P_RULE and rules:
            personal.append(rules.pop())
        for statement in personal:  # said in passing, within the session's length
            said[rng.randrange(1, len(said))] = statement
        sessions.append(said)
    return sessions, p


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


class RecordingSNS:
    """The process's SNS client, keeping every job it publishes (for the redelivery pass)."""

    def __init__(self, sns):
        self.sns = sns
        self.bodies: dict[str, str] = {}
        self._lock = threading.Lock()

    def publish(self, **request):
        answer = self.sns.publish(**request)
        with self._lock:
            self.bodies[request["MessageDeduplicationId"]] = request["Message"]
        return answer

    def __getattr__(self, name: str):
        return getattr(self.sns, name)


class CheckCounter:
    """Counts the cheap check's verdicts per tier (it runs once per window and tier)."""

    def __init__(self):
        from reverie.reflect import triage

        self.triage, self.check = triage, triage.worth_a_call
        self.verdicts: Counter[tuple[str, bool]] = Counter()
        self._lock = threading.Lock()
        triage.worth_a_call = self._counted

    def _counted(self, tier, jobs):
        verdict = self.check(tier, jobs)
        with self._lock:
            self.verdicts[(str(getattr(tier, "value", tier)), verdict)] += 1
        return verdict

    def snapshot(self) -> Counter[tuple[str, bool]]:
        with self._lock:
            return Counter(self.verdicts)


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
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


class Sweeper(threading.Thread):
    """The window sweep's schedule: fires every `period_s` until stopped."""

    def __init__(self, stack, period_s: float):
        super().__init__(name="bench-sweep", daemon=True)
        self.stack, self.period_s = stack, period_s
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.period_s):
            try:
                self.stack.run_schedule("windows")
            except Exception as exc:  # the next firing retries, as the schedule's would
                print(f"  window sweep failed: {exc}", file=sys.stderr)


class Traffic:
    """One mix's turns through the stack's HTTP API, each followed at once by a freshness probe from a new session."""

    def __init__(self, stack, project: str, key: str, concurrency: int):
        import httpx

        self.http = httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                 limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self.project = project
        self.replied: dict[str, float] = {}
        self.freshness_ms: list[float] = []
        self.not_fresh = 0
        self.context_reads = 0
        self.failed_turns = 0
        self.slots = threading.Semaphore(concurrency)
        self.probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bench-probe")
        self._lock = threading.Lock()

    def turn(self, user: str, session: str, message: str) -> None:
        with self.slots:
            response = self.http.post("/v1/chat", json={"user_id": user, "session_id": session, "message": message})
        replied = time.time()
        if response.status_code != 200 or not response.json().get("memory_saved"):
            print(f"  turn not saved: {response.status_code} {response.text[:200]}", file=sys.stderr)
            with self._lock:
                self.failed_turns += 1
            return
        job_id = response.json()["job_id"]
        with self._lock:
            self.replied[job_id] = replied
        self.probes.submit(self.probe, user, job_id, message, replied)

    def probe(self, user: str, job_id: str, message: str, replied: float, timeout_s: float = 10.0) -> None:
        """Poll the context of a new session until the turn is in it, pending (or the poll gives up)."""
        session = "probe-" + uuid.uuid4().hex[:8]
        while True:
            answer = self.http.get("/v1/context", params={"user_id": user, "session_id": session, "query": message})
            found = answer.status_code == 200 and any(p["job_id"] == job_id for p in answer.json()["pending"])
            elapsed = time.time() - replied
            with self._lock:
                self.context_reads += 1
                if found:
                    self.freshness_ms.append(elapsed * 1000)
                elif elapsed > timeout_s:
                    self.not_fresh += 1
            if found or elapsed > timeout_s:
                return
            time.sleep(0.01)

    def close(self) -> None:
        self.probes.shutdown(wait=True)
        self.http.close()


def run_mix(stack, clients, llm, sns, checks, name: str, drive, *, settings: dict[str, Any], delays_ms: dict,
            sweep_period_s: float, turns_planned: int, timeout_s: float, clock: float, moved: dict[str, str]) -> dict:
    """One mix in a fresh project: the turns (`drive(traffic)`), the sweep on its schedule, until every tier has
    an outcome for every job; then every job delivered a second time."""
    from reverie.domain.tiers import TIERS
    from reverie.store.projects import create_project_with_key

    project = f"bench-{name}-" + uuid.uuid4().hex[:6]
    key = create_project_with_key(clients.db, project).key
    base_settings = clients.settings
    clients.settings = base_settings.model_copy(update=settings)
    offline = llm.llm
    offline.structured_delay_s, offline.embed_delay_s = delays_ms["extraction"] / 1000, delays_ms["embedding"] / 1000
    queue_urls = [clients.settings.queue_url(t) for t in TIERS]
    sqs = stack.client("sqs")
    calls_before, checks_before = llm.snapshot(), checks.snapshot()
    sent_before = set(sns.bodies)

    traffic = Traffic(stack, project, key, concurrency=8)
    sweeper = Sweeper(stack, sweep_period_s)
    sweeper.start()
    started = time.time()
    try:
        drive(traffic)
        sending_s = time.time() - started
        traffic.probes.shutdown(wait=True)
        expected = len(traffic.replied) * len(TIERS)
        wait_for(lambda: sum(counts(clients.db, project)[k] for k in ("outcomes", "failures")) >= expected,
                 timeout_s, f"{name}: every tier to finish", every_s=0.5)
        finished = time.time()
    finally:
        sweeper.stopping.set()
        sweeper.join()
    first_pass = counts(clients.db, project)
    calls = llm.snapshot() - calls_before
    verdicts = checks.snapshot() - checks_before

    with clients.db.cursor(project) as cur:
        cur.execute("SELECT job_id, extract(epoch FROM max(processed_at)) AS at FROM processed_jobs"
                    " WHERE project_id = %s GROUP BY job_id", (project,))
        done_at = {r["job_id"]: float(r["at"]) for r in cur.fetchall()}
    lag_ms = [max(0.0, (done_at[j] - at) * 1000) for j, at in traffic.replied.items() if j in done_at]

    print(f"  {name}: delivering every job a second time...", file=sys.stderr)
    before = llm.snapshot()
    made = [body for dedup, body in sns.bodies.items() if dedup not in sent_before and dedup in traffic.replied]
    for url in queue_urls:
        for start in range(0, len(made), 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(k), "MessageBody": body, "MessageGroupId": json.loads(body)["project_id"] + ":"
                 + json.loads(body)["user_id"], "MessageDeduplicationId": "again-" + json.loads(body)["job_id"]}
                for k, body in enumerate(made[start:start + 10])])
    wait_for(lambda: queues_empty(sqs, queue_urls), timeout_s, "the second delivery to drain", every_s=0.5)
    time.sleep(1.5)  # a batch received just before the queues looked empty finishes its transaction
    wait_for(lambda: queues_empty(sqs, queue_urls), timeout_s, "the second delivery to drain", every_s=0.5)
    second_pass = counts(clients.db, project)
    redelivery_calls = sum(n for k, n in (llm.snapshot() - before).items() if k.startswith(("extract_", "reconcile_")))
    traffic.close()
    clients.settings = base_settings

    turns = len(traffic.replied)
    generation = {k: n for k, n in calls.items() if k.startswith(("extract_", "reconcile_"))}
    reflect_embeds = calls.get("embed", 0) - calls.get("chat:reply", 0) - traffic.context_reads
    duplicates = (second_pass["memories"] - first_pass["memories"]) + (second_pass["events"] - first_pass["events"])
    windows = {t.value: verdicts.get((t.value, True), 0) + verdicts.get((t.value, False), 0) for t in TIERS}
    return {
        "turns": turns,
        "turns_planned": turns_planned,
        "failed_turns": traffic.failed_turns,
        "sending_s": round(sending_s, 1),
        "elapsed_s": round(finished - started, 1),
        "turns_per_s": round(turns / (finished - started), 1),
        "llm_calls_per_100_turns": round(100 * sum(generation.values()) / turns, 2),
        "llm_calls": dict(sorted(generation.items())),
        "embed_calls_per_100_turns": round(100 * reflect_embeds / turns, 2),
        "freshness_ms": percentiles(traffic.freshness_ms),
        "freshness_probes": {"found": len(traffic.freshness_ms), "not_found_within_10_s": traffic.not_fresh},
        "lag_ms": percentiles([ms * clock for ms in lag_ms]),
        **({"lag_wall_ms": percentiles(lag_ms)} if clock != 1 else {}),
        "duplicates_after_redelivery": duplicates,
        "redelivery": {"messages": len(made) * len(TIERS), "new_memories": second_pass["memories"]
                       - first_pass["memories"], "new_events": second_pass["events"] - first_pass["events"],
                       "model_calls": redelivery_calls},
        "check": {"windows": windows,
                  "closed_without_a_call": {t.value: verdicts.get((t.value, False), 0) for t in TIERS}},
        "outcomes": {"learned": first_pass["outcomes"], "failed_or_dead": first_pass["failures"]},
        "memories": {"current": first_pass["current"], "superseded": first_pass["memories"] - first_pass["current"]},
        "quality": _homes(clients, project, moved),
    }


def _homes(clients, project: str, moved: dict[str, str]) -> dict[str, int]:
    """The users who moved, and how many of them have the new city as their one current home."""
    with clients.db.cursor(project) as cur:
        cur.execute("SELECT user_id, text FROM memories WHERE project_id = %s AND tier = 'semantic'"
                    " AND superseded_at IS NULL AND metadata->>'slot' = 'home_city'", (project,))
        homes: dict[str, list[str]] = {}
        for row in cur.fetchall():
            homes.setdefault(row["user_id"], []).append(row["text"])
    return {"users_who_moved": len(moved),
            "current_home_is_the_new_city": sum(homes.get(u) == [f"User lives in {c}"] for u, c in moved.items())}


# ---------------------------------------------------------------- the two mixes


def burst(users_n: int, turns_n: int, session_turns: int, rng: random.Random):
    users = [f"user-{i:02d}" for i in range(users_n)]
    per_user, moved = {}, {}
    for user in users:
        per_user[user], p = conversation(rng, max(1, turns_n // users_n))
        if f"I moved to {p['moved']}." in per_user[user]:
            moved[user] = p["moved"]
    order = schedule(users, per_user, session_turns, rng)

    def drive(traffic: Traffic) -> None:
        for user, session, message in order:
            traffic.turn(user, session, message)

    return drive, len(order), moved


def realistic(users_n: int, turns_n: int, compression: float, quiet_s: float, sweep_s: float, rng: random.Random):
    """Each user on a thread of their own: their sessions, the pauses between turns and between sessions, on the
    compressed clock; users start over the first half hour (simulated), so that about half talk at any time."""
    timelines, moved = {}, {}
    for i in range(users_n):
        sessions, p = returning_user(rng, max(3, turns_n // users_n))
        if any(f"I moved to {p['moved']}." in said for said in sessions):
            moved[f"user-{i:02d}"] = p["moved"]
        steps = []
        for k, said in enumerate(sessions):
            gap_s = 0.0 if k == 0 else min(rng.uniform(3600, 24 * 3600), quiet_s + 2 * sweep_s) / compression
            for n, message in enumerate(said):
                steps.append((gap_s if n == 0 else rng.uniform(5, 45) / compression, f"s{k + 1}", message))
        timelines[f"user-{i:02d}"] = (rng.uniform(0, 1800 / compression), steps)

    def drive(traffic: Traffic) -> None:
        def talk(user: str, start_s: float, steps) -> None:
            time.sleep(start_s)
            for pause_s, session, message in steps:
                time.sleep(pause_s)
                traffic.turn(user, session, message)

        threads = [threading.Thread(target=talk, args=(user, *timeline), name=f"bench-{user}")
                   for user, timeline in timelines.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return drive, sum(len(steps) for _, steps in timelines.values()), moved


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 turns from 10 users per mix (a smoke run)")
    parser.add_argument("--mix", choices=("burst", "realistic", "both"), default="both")
    parser.add_argument("--users", type=int, default=None, help="users (default 50)")
    parser.add_argument("--turns", type=int, default=None, help="chat turns per mix, one job each (default 2,000)")
    parser.add_argument("--session-turns", type=int, default=10, help="burst: turns per chat session")
    parser.add_argument("--compression", type=float, default=15, help="realistic: real seconds per clock second")
    parser.add_argument("--window-jobs", type=int, default=20, help="reflection window: jobs (template default)")
    parser.add_argument("--window-s", type=int, default=600, help="reflection window: seconds (template default)")
    parser.add_argument("--quiet-s", type=int, default=60, help="reflection window: quiet seconds (template default)")
    parser.add_argument("--sweep-s", type=float, default=SWEEP_PERIOD_S, help="the window sweep's period")
    parser.add_argument("--extract-ms", type=float, default=800, help="offline model delay per structured call")
    parser.add_argument("--embed-ms", type=float, default=30, help="offline model delay per embedding call")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the tiers to finish")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "reflect.json"))
    args = parser.parse_args(argv)
    users_n = args.users or (10 if args.quick else 50)
    turns_n = args.turns or (200 if args.quick else 2000)
    c = args.compression

    os.environ.update(POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_METRICS_NAMESPACE="Reverie",
                      POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="WARNING",
                      OFFLINE_EXTRACT_DELAY_MS=str(args.extract_ms), OFFLINE_EMBED_DELAY_MS=str(args.embed_ms),
                      REFLECT_WINDOW_JOBS=str(args.window_jobs), REFLECT_WINDOW_S=str(args.window_s),
                      REFLECT_QUIET_S=str(args.quiet_s))
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

    print(f"starting the local stack ({turns_n} turns per mix, {users_n} users)...", file=sys.stderr)
    stack = LocalStack(run_schedules=False, retry_delay_s=1.0, poll_wait_s=1)
    stack.start(port=0)
    mixes: dict[str, dict] = {}
    try:
        clients = runtime.clients()
        llm = CountingLLM(clients.llm)
        clients.__dict__["llm"] = llm  # the functions reach the same Clients through runtime.clients()
        sns = RecordingSNS(clients.sns)
        clients.__dict__["sns"] = sns
        checks = CheckCounter()
        deployed = {"reflect_window_jobs": args.window_jobs, "reflect_window_s": args.window_s,
                    "reflect_quiet_s": args.quiet_s}
        delays = {"extraction": args.extract_ms, "embedding": args.embed_ms}
        if args.mix in ("burst", "both"):
            print("burst: sessions of 10 turns, interleaved, as fast as the stack answers...", file=sys.stderr)
            drive, planned, moved = burst(users_n, turns_n, args.session_turns, random.Random(args.seed))
            mixes["burst"] = run_mix(stack, clients, llm, sns, checks, "burst", drive, settings=deployed,
                                     delays_ms=delays, sweep_period_s=args.sweep_s, turns_planned=planned,
                                     timeout_s=args.timeout, clock=1, moved=moved)
            mixes["burst"]["clock"] = {"compression": 1, "reflection_window": deployed, "sweep_period_s":
                                       args.sweep_s, "model_delays_ms": delays}
        if args.mix in ("realistic", "both"):
            print(f"realistic: returning users on a clock compressed {c:g}x...", file=sys.stderr)
            window = {"reflect_window_jobs": args.window_jobs, "reflect_window_s": max(1, round(args.window_s / c)),
                      "reflect_quiet_s": max(1, round(args.quiet_s / c))}
            scaled = {k: round(v / c, 2) for k, v in delays.items()}
            sweep_s = max(MIN_SWEEP_PERIOD_S, args.sweep_s / c)
            drive, planned, moved = realistic(users_n, turns_n, c, args.quiet_s, args.sweep_s,
                                              random.Random(args.seed + 1))
            mixes["realistic"] = run_mix(stack, clients, llm, sns, checks, "realistic", drive, settings=window,
                                         delays_ms=scaled, sweep_period_s=sweep_s, turns_planned=planned,
                                         timeout_s=args.timeout, clock=c, moved=moved)
            mixes["realistic"]["clock"] = {
                "compression": c, "reflection_window": window, "sweep_period_s": round(sweep_s, 2),
                "model_delays_ms": scaled, "pause_between_turns_s": [5, 45], "pause_between_sessions_h": [1, 24],
                "pause_between_sessions_cut_to_s": args.quiet_s + 2 * args.sweep_s,
                "composition": {"session_turns": [3, 15], "sessions_with_a_fact": P_FACT,
                                "sessions_with_a_preference_or_habit": P_RULE,
                                "sessions_opening_with_a_task_about_the_user": P_OWN_TASK,
                                "facts_in_order": "where the user lives, a move, then family, work, hobbies"}}
    finally:
        stack.stop()

    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    kept = previous.get("mixes", {}) if isinstance(previous.get("mixes"), dict) else {}
    result = {
        "benchmark": "reflection on two traffic mixes through the local stack (chat API, three reflectors, "
                     "offline model)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "mode": "quick" if args.quick else "full",
        "users": users_n,
        "turn": "one chat exchange (a user message and its reply), published as one reflection job",
        "naive_llm_calls_per_100_turns": NAIVE_CALLS_PER_100_TURNS,
        "mixes": {**kept, **mixes},
    }
    realistic_mix = result["mixes"].get("realistic")
    result["targets"] = {
        "realistic_llm_calls_per_100_turns": TARGET_CALLS_PER_100_TURNS,
        "realistic_freshness_p95_ms": TARGET_FRESHNESS_P95_MS,
        "duplicates_after_redelivery": 0,
        "met": {
            "realistic_llm_calls": bool(realistic_mix) and
            realistic_mix["llm_calls_per_100_turns"] <= TARGET_CALLS_PER_100_TURNS,
            "realistic_freshness": bool(realistic_mix) and realistic_mix["freshness_ms"] is not None and
            realistic_mix["freshness_ms"]["p95"] <= TARGET_FRESHNESS_P95_MS,
            "duplicates": all(m["duplicates_after_redelivery"] == 0 for m in result["mixes"].values()),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    summary = {name: {k: m[k] for k in ("turns", "llm_calls_per_100_turns", "freshness_ms", "lag_ms",
                                        "duplicates_after_redelivery")} for name, m in mixes.items()}
    print(json.dumps({"mixes": summary, "targets_met": result["targets"]["met"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
