"""The fault suite (`make bench-faults`): the whole local stack on real engines, an engine stopped or the model
broken for real in each scenario, every job sent counted, then every job's outcome and every memory checked.

Writes bench/results/faults.json: {"scenarios": [{"name", "jobs", "lost", "duplicated", "passed", "notes"}],
"lost", "duplicated"}. A job is *lost* when the API answered for it (a chat's 200 with memory_saved, an add's
202) and some tier never learned it; *duplicated* counts memories stored twice for one job and text.

The model is an OpenAI-compatible endpoint served here (backed by the offline model), which can answer 500s,
answer too slowly, answer invalid JSON, refuse to answer one poisoned job, or be down (its port closed).
Queue retries are compressed: a failed message comes back after a few seconds (AWS: the 12-minute visibility
timeout), and a held job waits out a failure for as long.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RETRY_S = 3.0  # a failed queue message's return (the local runner's retry delay) and a held job's wait
FINAL = {"done", "empty"}


# ---------------------------------------------------------------- a model that can break


class Model:
    """An OpenAI-compatible endpoint on 127.0.0.1 answering with the offline model, in a mode: ok, error (500),
    slow (longer than the client waits), invalid (structured answers that are not JSON), poison (500 for a
    request that holds `poison_text`), or down (its port closed)."""

    def __init__(self) -> None:
        from reverie.chat import answers
        from reverie.llm import OfflineLLM
        from reverie.reflect import (
            offline_skills,  # noqa: F401  (registers the reflection skills)
            schemas,
        )

        self.llm = OfflineLLM()
        self.schemas = {
            "EpisodicExtraction": (schemas.EpisodicExtraction, "extract_episodic"),
            "SemanticExtraction": (schemas.SemanticExtraction, "extract_semantic"),
            "ProceduralExtraction": (schemas.ProceduralExtraction, "extract_procedural"),
            "Reconciliation": (schemas.Reconciliation, "reconcile_semantic"),
            "Answer": (answers.Answer, "answer"),
        }
        self.mode = "ok"
        self.poison_text = "\0"
        self.slow_s = 4.0
        self.requests = 0
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                status, answer = model.answer(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def down(self) -> None:
        self.stop()

    def up(self, mode: str = "ok") -> None:
        if self.server is None:
            self.start()
        self.mode = mode

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests += 1
        text = json.dumps(body)
        if self.mode == "error" or (self.mode == "poison" and self.poison_text in text):
            return 500, {"error": {"message": "the model is failing", "type": "server_error"}}
        if self.mode == "slow":
            time.sleep(self.slow_s)
        if path.endswith("/embeddings"):
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = self.llm.embed(inputs).vectors
            return 200, {"object": "list", "model": body.get("model"), "usage": {"prompt_tokens": 1, "total_tokens": 1},
                         "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]}
        messages = body["messages"]
        schema_name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name")
        if schema_name:
            content = "this is not JSON" if self.mode == "invalid" else self.llm.structured(
                messages, self.schemas[schema_name][0], purpose=self.schemas[schema_name][1]).value.model_dump_json()
        else:
            content = self.llm.chat(messages).text
        return 200, {"id": "c", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


# ---------------------------------------------------------------- the stack and what it did


class Harness:
    def __init__(self, data_dir: Path):
        import httpx

        from reverie_dev.local.runner import LocalStack

        self.model = Model()
        os.environ.update(LLM_BASE_URL=self.model.url, LLM_API_KEY="bench", LLM_TIMEOUT_S="2", LLM_MAX_RETRIES="0",
                          LLM_CHAT_MODEL="bench-chat", LLM_EMBEDDING_MODEL="text-embedding-3-small")
        self.stack = LocalStack(retry_delay_s=RETRY_S, run_schedules=False, poll_wait_s=1)
        self.stack.start(data_dir, persist=True, port=0)
        self.base_settings = self.stack.clients.settings
        self.http = httpx.Client(base_url=self.stack.base_url, timeout=60,
                                 headers={"Authorization": f"Bearer {self.stack.api_key}"})

    def close(self) -> None:
        self.http.close()
        self.stack.stop()
        self.model.stop()

    @property
    def clients(self):
        return self.stack.clients

    @property
    def project(self) -> str:
        return self.stack.project_id

    def settings(self, **changes: Any) -> None:
        self.clients.settings = self.base_settings.model_copy(update=changes)

    def reset(self) -> None:
        self.clients.settings = self.base_settings
        self.model.up("ok")
        for engine in ("valkey", "postgres"):
            self.start_engine(engine)

    def stop_engine(self, name: str) -> None:
        self.stack.engines.stop_engine(name)

    def start_engine(self, name: str) -> None:
        with contextlib.suppress(Exception):  # already running
            self.stack.engines.start_engine(name)

    def chat(self, user: str, message: str, session: str = "s1") -> tuple[int, dict[str, Any]]:
        response = self.http.post("/v1/chat", json={"user_id": user, "session_id": session, "message": message})
        return response.status_code, response.json()

    def saved_chats(self, users: list[str], messages: Callable[[str, int], str], per_user: int = 2) -> list[str]:
        """Chat turns; the job ids of those answered with memory_saved."""
        jobs = []
        for i in range(per_user):
            for user in users:
                status, body = self.chat(user, messages(user, i))
                if status == 200 and body.get("memory_saved"):
                    jobs.append(body["job_id"])
        return jobs

    def outcomes(self, job_ids: list[str]) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = {j: {} for j in job_ids}
        with self.clients.db.read(self.project) as cur:
            cur.execute("SELECT job_id, tier, status FROM processed_jobs WHERE project_id = %s AND job_id = ANY(%s)",
                        (self.project, job_ids))
            for row in cur.fetchall():
                found[row["job_id"]][row["tier"]] = row["status"]
        return found

    def lost(self, job_ids: list[str]) -> list[str]:
        return [j for j, tiers in self.outcomes(job_ids).items()
                if set(tiers) != {"episodic", "semantic", "procedural"} or not set(tiers.values()) <= FINAL]

    def wait_learned(self, job_ids: list[str], timeout_s: float = 60, while_waiting: Callable[[], Any] | None = None
                     ) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.lost(job_ids):
                return []
            if while_waiting is not None:
                while_waiting()
            time.sleep(0.5)
        return self.lost(job_ids)

    def duplicated(self, users: list[str]) -> int:
        """Memories stored twice: the same job, tier and text more than once."""
        with self.clients.db.read(self.project) as cur:
            cur.execute(
                "SELECT coalesce(sum(n - 1), 0) AS extra FROM (SELECT count(*) AS n FROM memories"
                " WHERE project_id = %s AND user_id = ANY(%s) GROUP BY source_job_id, tier, lower(text)) g",
                (self.project, users))
            return int(cur.fetchone()["extra"])

    def dead_letters(self) -> int:
        from reverie.jobs.dlq import QUEUES, peek, queue_urls

        return sum(len(peek(self.clients.sqs, queue_urls(self.clients.settings, name)[1])) for name in QUEUES)

    def paused_reflectors(self):
        from contextlib import ExitStack

        stack = ExitStack()
        for name, poller in self.stack.pollers.items():
            if "Reflector" in name:
                stack.enter_context(poller.paused())
        return stack

    def sweep(self) -> None:
        self.stack.run_schedule("windows")


def users_of(prefix: str, n: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{prefix}-{run}-{i}" for i in range(n)]


def city_message(user: str, i: int) -> str:
    return f"I live in City{i} and my name is {user.split('-')[-1]}."


def result(name: str, jobs: list[str], lost: list[str], duplicated: int, ok: bool, notes: str) -> dict[str, Any]:
    return {"name": name, "jobs": len(jobs), "lost": len(lost), "duplicated": duplicated,
            "passed": ok and not lost and duplicated == 0, "notes": notes}


# ---------------------------------------------------------------- the scenarios


def valkey_down_during_chat(h: Harness) -> dict[str, Any]:
    users = users_of("valkey", 4)
    h.stop_engine("valkey")
    try:
        answers = [h.chat(u, city_message(u, 0)) for u in users]
        probe = h.stack.run_schedule("health")
    finally:
        h.start_engine("valkey")
    jobs = [b["job_id"] for s, b in answers if s == 200 and b.get("memory_saved")]
    lost = h.wait_learned(jobs)
    reported = str(probe["engines"]["valkey"]).startswith("down")
    return result("valkey down during chat", jobs, lost, h.duplicated(users),
                  len(jobs) == len(users) and reported,
                  f"{len(jobs)}/{len(users)} replies answered 200 with memory_saved (published directly, tier 1 "
                  f"skipped); the health probe reported valkey {probe['engines']['valkey']!r}")


def topic_refusing(h: Harness) -> dict[str, Any]:
    from reverie.cache import outbox
    from reverie_dev.local.engines import create_messaging

    users = users_of("topic", 3)
    sns = h.stack.client("sns")
    sns.delete_topic(TopicArn=h.clients.settings.reflection_topic_arn)
    try:
        jobs = h.saved_chats(users, city_message, per_user=2)
        parked = outbox.stats(h.clients.valkey)["jobs"]
    finally:
        create_messaging(h.stack.engines)  # the same topic again, with its subscriptions
    probe = h.stack.run_schedule("health")
    lost = h.wait_learned(jobs)
    published = probe["outbox_drain"]["published"]
    return result("topic refusing publishes", jobs, lost, h.duplicated(users),
                  parked >= len(jobs) and published >= len(jobs) and outbox.stats(h.clients.valkey)["jobs"] == 0,
                  f"{parked} jobs waited in the outbox while the topic was gone; the health probe published "
                  f"{published}, each learned once")


def postgres_down_during_reflection(h: Harness) -> dict[str, Any]:
    users = users_of("postgres", 4)
    with h.paused_reflectors():
        jobs = h.saved_chats(users, city_message, per_user=2)
        h.stop_engine("postgres")
    outage_s = 2 * RETRY_S
    began = time.monotonic()
    probe = h.stack.run_schedule("health")  # the probe reports the outage instead of failing with it
    time.sleep(max(0.0, outage_s - (time.monotonic() - began)))  # the reflectors fail, their messages come back
    h.start_engine("postgres")
    lost = h.wait_learned(jobs)
    reported = str(probe["engines"]["postgres"]).startswith("down")
    return result("postgres down during reflection", jobs, lost, h.duplicated(users),
                  reported and h.dead_letters() == 0,
                  f"Postgres stopped for {outage_s:.0f} s while {len(jobs)} jobs were being reflected (the health "
                  f"probe reported postgres {probe['engines']['postgres']!r}); their messages were retried and "
                  "each job applied once")


def model_failing(h: Harness) -> dict[str, Any]:
    users = users_of("model", 3)
    with h.paused_reflectors():
        jobs = h.saved_chats(users, city_message, per_user=2)
        h.model.up("error")
        refused = [h.chat(users[0], "Where do I live?")[0]]
    for mode in ("error", "slow", "invalid"):  # the reflectors meet each in turn, within their retries
        h.model.up(mode)
        if mode == "invalid":  # a reply is plain text: answered, and its job learned once the model is back
            jobs += h.saved_chats(users[1:2], city_message, per_user=1)
        time.sleep(RETRY_S * 0.7)
    h.model.up("ok")
    lost = h.wait_learned(jobs)
    return result("model failing: 500s, timeouts, invalid JSON, then recovering", jobs, lost, h.duplicated(users),
                  refused == [503] and h.dead_letters() == 0,
                  f"a chat while the model answered 500s got {refused[0]} and stored nothing; reflections met 500s, "
                  "timeouts and invalid JSON in turn and were retried; all learned once after the model came back")


def model_outage_with_windows(h: Harness) -> dict[str, Any]:
    users = users_of("window", 3)
    # The deployed window (20 jobs), on a compressed clock: windows due after 2 s, a failure waited out for RETRY_S.
    h.settings(reflect_window_jobs=20, reflect_window_s=2, reflect_retry_after_s=RETRY_S)
    jobs = h.saved_chats(users, city_message, per_user=2)
    time.sleep(3)  # held, not due yet
    h.model.down()
    budget_s = RETRY_S * (h.clients.settings.reflect_max_receive_count - 1)  # a queued message's receives
    outage_s = budget_s - RETRY_S
    ends = time.monotonic() + outage_s
    sweeps = 0
    while time.monotonic() < ends:  # the window sweep runs all along (each minute in AWS)
        h.sweep()
        sweeps += 1
        time.sleep(0.5)
    h.model.up("ok")
    lost = h.wait_learned(jobs, while_waiting=h.sweep)
    dead = h.dead_letters()
    h.settings()
    return result("model outage with reflection windows open", jobs, lost, h.duplicated(users), dead == 0,
                  f"window of 20 jobs; the model was down {outage_s:.0f} s, under a queued message's retry budget "
                  f"of {budget_s:.0f} s (AWS: 48 min), through {sweeps} sweeps; {dead} dead-lettered; all learned "
                  "once after it came back")


def reflector_crash_and_redelivery(h: Harness) -> dict[str, Any]:
    from reverie.jobs import delivery
    from reverie.jobs.message import make_job

    users = users_of("crash", 3)
    sqs = h.stack.client("sqs")
    tier_queue = h.clients.settings.queue_url("semantic")
    with h.paused_reflectors():
        jobs = []
        for user in users:
            job = make_job(project_id=h.project, user_id=user, session_id="s1",
                           turns=[_turn("user", city_message(user, 0)), _turn("assistant", "Noted.")])
            delivery.send(h.clients.sns, h.clients.settings.reflection_topic_arn, job)
            # ... and every message delivered twice: the same job again under another deduplication id
            h.clients.sns.publish(TopicArn=h.clients.settings.reflection_topic_arn, Message=delivery.encode(job),
                                  MessageGroupId=job.group_id, MessageDeduplicationId=f"again-{job.job_id}")
            jobs.append(job.job_id)
        # A semantic reflector in a process of its own takes a batch and is killed in the middle of learning it.
        killed = _kill_a_reflector_mid_batch(h, tier_queue, sqs)
    lost = h.wait_learned(jobs)
    with h.clients.db.read(h.project) as cur:
        cur.execute("SELECT count(*) AS n FROM memory_events WHERE project_id = %s AND user_id = ANY(%s)"
                    " AND event = 'ADD'", (h.project, users))
        adds = cur.fetchone()["n"]
    with h.clients.db.read(h.project) as cur:
        cur.execute("SELECT count(*) AS n FROM memories WHERE project_id = %s AND user_id = ANY(%s)",
                    (h.project, users))
        stored = cur.fetchone()["n"]
    return result("reflector killed mid-batch, and every message delivered twice", jobs, lost, h.duplicated(users),
                  killed and adds == stored,
                  f"each job published twice (2 deliveries per tier); a reflector process was killed "
                  f"{'mid-batch' if killed else '(not reached)'}; {stored} memories, one ADD event each")


def _turn(role: str, content: str):
    from reverie.domain.memory import Turn

    return Turn(role=role, content=content)


def _kill_a_reflector_mid_batch(h: Harness, queue_url: str, sqs) -> bool:
    """Receive a batch in a child process running the semantic reflector with a slow model, and SIGKILL it while
    it learns (its messages come back after their visibility timeout, as in Lambda)."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_REFLECTOR, queue_url],
        env={**os.environ, **h.stack.environment, "LLM_BASE_URL": "", "OFFLINE_EXTRACT_DELAY_MS": "20000",
             "REFLECT_WINDOW_JOBS": "1", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    started = child.stdout.readline().strip() == "learning"
    time.sleep(1.0)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    return started and child.returncode == -signal.SIGKILL


_CRASHING_REFLECTOR = """
import sys, boto3
from reverie.domain.tiers import Tier
from reverie.platform.clients import clients
from reverie.reflect.consumer import handle_batch
from reverie_dev.local.context import LambdaContext
c = clients()
got = c.sqs.receive_message(QueueUrl=sys.argv[1], MaxNumberOfMessages=10, VisibilityTimeout=5,
                            AttributeNames=["All"]).get("Messages", [])
records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": {}, "eventSource": "aws:sqs"} for m in got]
print("learning" if records else "nothing", flush=True)
handle_batch(Tier.SEMANTIC, {"Records": records}, LambdaContext(timeout_s=120), c)
print("done", flush=True)
"""


def poison_message(h: Harness) -> dict[str, Any]:
    from reverie_dev.cli import cmd_dlq, parser

    users = users_of("poison", 2)
    h.clients.sqs.send_message(QueueUrl=h.clients.settings.queue_url("episodic"), MessageBody="{not a job",
                               MessageGroupId="poison", MessageDeduplicationId=uuid.uuid4().hex)
    marker = f"POISON-{uuid.uuid4().hex[:8]}"
    h.model.poison_text = marker
    h.model.up("poison")
    # Learned from, not answered: the model fails only the reflection of this one job.
    added = h.http.post("/v1/memories", json={"user_id": users[0], "messages": [
        {"content": f"I keep a {marker} notebook."}]})
    healthy = h.saved_chats(users[1:], city_message, per_user=1)
    poisoned = added.json()["job_ids"] if added.status_code == 202 else []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and h.dead_letters() < 1 + len(poisoned) * 3:
        time.sleep(0.5)
    parked = h.dead_letters()
    from reverie.jobs.dlq import list_messages

    reasons = [p.last_error for p in list_messages(h.clients, "episodic") if p.job_id is None]
    h.model.up("ok")  # the fix
    for tier in ("episodic", "semantic", "procedural"):
        cmd_dlq(parser().parse_args(["dlq", "redrive", "--tier", tier]), h.clients)
    lost = h.wait_learned(poisoned + healthy)
    return result("poison message parked with its reason, redriven once after the fix", poisoned + healthy, lost,
                  h.duplicated(users), parked == 1 + 3 * len(poisoned) and bool(reasons and reasons[0]),
                  f"a malformed body was refused and parked with its reason ({(reasons or ['-'])[0]!r}); the job "
                  f"the model kept failing went to each tier's DLQ after 5 receives ({parked} parked in all); after "
                  "the fix `reverie dlq redrive` applied it once; the user beside it was learned meanwhile")


def forget_racing_work(h: Harness) -> dict[str, Any]:
    from reverie.cache import keys

    user = users_of("forget", 1)[0]
    others = users_of("bystander", 1)
    h.settings(reflect_window_jobs=20, reflect_window_s=2)
    # A held window, and a job still queued.
    for i in range(2):
        h.chat(user, city_message(user, i))
    time.sleep(1.5)
    kept = h.saved_chats(others, city_message, per_user=1)
    with h.paused_reflectors():
        h.chat(user, "I also have a cat called Miso.")
        # A reply still being made, and a write as given still embedding, when the forget arrives.
        h.model.up("slow")
        h.model.slow_s = 1.5
        racing: dict[str, Any] = {}
        threads = [
            threading.Thread(target=lambda: racing.update(chat=h.chat(user, "My PIN is 4321."))),
            threading.Thread(target=lambda: racing.update(add=h.http.post("/v1/memories", json={
                "user_id": user, "infer": False, "messages": [{"content": "My PIN is 4321."}]}).status_code)),
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        forgot = h.http.delete(f"/v1/users/{user}").status_code
        for thread in threads:
            thread.join(30)
        h.model.up("ok")
        h.model.slow_s = 4.0
    for _ in range(10):  # the queued job arrives; the windows would close
        h.sweep()
        time.sleep(0.5)
    h.stack.run_schedule("health")
    h.settings()
    left = _traces_of(h, user)
    tag = keys.user_tag(h.project, user)
    valkey_left = [k.decode() for k in h.clients.valkey.scan_iter(match="*", count=1000)
                   if tag in k.decode() and not k.decode().startswith("forgotten:")]
    lost = h.wait_learned(kept)
    nothing = not any(left.values()) and not valkey_left
    return result("forget racing work in flight", kept, lost, h.duplicated(others), forgot == 202 and nothing,
                  f"forgotten while a reply was being made (answered {racing.get('chat', (None,))[0]}, "
                  f"memory_saved {racing.get('chat', (None, {}))[1].get('memory_saved')}), a write as given was "
                  f"embedding (answered {racing.get('add')}), a job was queued and a window held; afterwards rows "
                  f"{left}, Valkey keys {valkey_left}; the bystander was learned")


def _traces_of(h: Harness, user: str) -> dict[str, int]:
    found = {}
    with h.clients.db.read(h.project) as cur:
        for table in ("memories", "memory_events", "narratives", "processed_jobs", "held_jobs", "llm_usage"):
            cur.execute(f"SELECT count(*) AS n FROM {table} WHERE project_id = %s AND user_id = %s", (h.project, user))
            found[table] = cur.fetchone()["n"]
    return found


SCENARIOS = [valkey_down_during_chat, topic_refusing, postgres_down_during_reflection, model_failing,
             model_outage_with_windows, reflector_crash_and_redelivery, poison_message, forget_racing_work]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "faults.json"))
    parser.add_argument("--only", help="run only the scenarios whose function name contains this")
    args = parser.parse_args(argv)
    logging.getLogger("reverie_dev.local").setLevel(logging.CRITICAL)
    logging.getLogger("reverie").setLevel(logging.CRITICAL)
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    chosen = [s for s in SCENARIOS if not args.only or args.only in s.__name__]
    results = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reverie-faults-") as tmp:
        h = Harness(Path(tmp))
        try:
            for scenario in chosen:
                began = time.monotonic()
                try:
                    outcome = scenario(h)
                except Exception as exc:  # a scenario that breaks is a failed scenario, not a crashed suite
                    outcome = {"name": scenario.__name__, "jobs": 0, "lost": 0, "duplicated": 0, "passed": False,
                               "notes": f"the scenario failed: {type(exc).__name__}: {exc}"}
                finally:
                    h.reset()
                outcome["seconds"] = round(time.monotonic() - began, 1)
                results.append(outcome)
                print(f"{'PASS' if outcome['passed'] else 'FAIL'}  {outcome['name']}: {outcome['jobs']} jobs, "
                      f"{outcome['lost']} lost, {outcome['duplicated']} duplicated ({outcome['seconds']} s)",
                      file=sys.stderr)
        finally:
            h.close()
    report = {
        "benchmark": "fault suite (make bench-faults)", "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "seconds": round(time.monotonic() - started, 1), "scenarios": results,
        "lost": sum(r["lost"] for r in results), "duplicated": sum(r["duplicated"] for r in results),
        "passed": all(r["passed"] for r in results),
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
