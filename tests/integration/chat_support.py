"""Helpers for the chat tests: API Gateway events as the authorizer leaves them, the chat handler, what reached
the tier queues and tier 1, a recording model, swapping one engine of the shared clients for a broken one, and
holding back the work the chat defers past its response."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from typing import Any

import redis

from reverie import after_response, jobs, outbox, working_memory
from reverie.errors import InvalidJob
from reverie.llm import OfflineLLM
from reverie.local.context import LambdaContext
from reverie.models import ReflectionJob, Tier
from reverie.store import Database


def chat_event(project_id: str | None, body: dict | str, *, headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = body if isinstance(body, str) else json.dumps(body)
    request_context: dict[str, Any] = {
        "accountId": "123456789012", "apiId": "local", "domainName": "localhost", "domainPrefix": "localhost",
        "http": {"method": "POST", "path": "/v1/chat", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                 "userAgent": "test"},
        "requestId": "test", "routeKey": "POST /v1/chat", "stage": "$default",
        "time": "21/Nov/2026:12:00:00 +0000", "timeEpoch": 1795176000000,
    }
    if project_id is not None:
        request_context["authorizer"] = {"lambda": {"project_id": project_id}}
    return {
        "version": "2.0", "routeKey": "POST /v1/chat", "rawPath": "/v1/chat", "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "localhost:3000", **(headers or {})},
        "requestContext": request_context, "isBase64Encoded": False, "body": raw,
    }


def chat_handler():
    from function_loader import load_function

    return load_function("ChatFunction")


def post_chat(project_id: str | None, body: dict | str, *, key: str | None = None,
              wait_deferred: bool = True) -> tuple[int, dict]:
    """One turn through the handler; then (unless told not to) the work it deferred past its response, the
    publish, is waited for, so what the turn published can be read."""
    headers = {"idempotency-key": key} if key else None
    answer = chat_handler()(chat_event(project_id, body, headers=headers), LambdaContext())
    if wait_deferred:
        assert after_response.drain(10), "work deferred past the response did not finish"
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else {}


@contextmanager
def deferred_work_held():
    """Until the block ends (or the callable it gives is called), work deferred past a response waits: the one
    background worker that runs it is kept busy."""
    gate = threading.Event()
    after_response.defer(gate.wait, 10)
    try:
        yield gate.set
    finally:
        gate.set()


def published(clients, project_id: str, tier: Tier = Tier.EPISODIC) -> list[ReflectionJob]:
    """Take this project's jobs off one tier queue (what the topic fanned out); others' go back at once."""
    url, found, seen = clients.settings.queue_url(tier), [], set()
    while True:
        got = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)
        messages = got.get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        for message in messages:
            seen.add(message["MessageId"])
            try:
                job = jobs.parse_job(message["Body"])
            except InvalidJob:
                job = None
            if job is not None and job.project_id == project_id:
                found.append(job)
                clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                clients.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                                      VisibilityTimeout=0)
        if not fresh:
            return found


def drain_all_tiers(clients, project_id: str) -> None:
    """Leave the shared tier queues as a test found them: every job of its project taken off."""
    from reverie.models import TIERS

    for tier in TIERS:
        published(clients, project_id, tier)


def tier1(clients, project_id: str, user_id: str, session_id: str) -> list:
    return working_memory.recent_turns(clients.valkey, project_id, user_id, session_id, 1000)


def valkey_keys_of(clients, project_id: str) -> list[str]:
    """Every Valkey key that names the project (tier 1, job markers, idempotency records, the outbox)."""
    escaped = working_memory.escape(project_id)
    keys = [k.decode() for k in clients.valkey.scan_iter(match="*", count=1000)]
    return [k for k in keys if f":{escaped}:" in k or k.endswith(f":{escaped}")]


def parked(clients, project_id: str, user_id: str) -> list[ReflectionJob]:
    raw = clients.valkey.hgetall(outbox.jobs_key(project_id, user_id))
    return sorted((jobs.parse_job(v) for v in raw.values()), key=lambda j: j.created_at)


class RecordingLLM:
    """The offline model, keeping the messages of every reply; `fail` raises on replies, `gate` holds them."""

    def __init__(self, *, fail: Exception | None = None, gate: threading.Event | None = None,
                 embed_fail: Exception | None = None):
        self.llm = OfflineLLM()
        self.chat_model, self.embedding_model, self.dimensions = (
            self.llm.chat_model, self.llm.embedding_model, self.llm.dimensions)
        self.replies: list[list[dict[str, str]]] = []
        self.fail, self.gate, self.embed_fail = fail, gate, embed_fail
        self.entered = threading.Event()

    def chat(self, messages, **kwargs):
        self.replies.append(messages)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        return self.llm.chat(messages, **kwargs)

    def structured(self, messages, schema, **kwargs):
        return self.llm.structured(messages, schema, **kwargs)

    def embed(self, texts):
        if self.embed_fail is not None:
            raise self.embed_fail
        return self.llm.embed(texts)


DOWN_REDIS_URL = "redis://127.0.0.1:1/0"
DOWN_DATABASE_URL = "postgresql://reverie@127.0.0.1:1/reverie"


@contextmanager
def swapped(clients, *, llm=None, valkey_down: bool = False, postgres_down: bool = False, **settings: Any):
    """Replace parts of the shared clients for one block: the model, an unreachable Valkey or Postgres, or
    settings (e.g. a topic that does not exist)."""
    saved_dict = {k: clients.__dict__[k] for k in ("llm", "valkey") if k in clients.__dict__}
    saved_settings, saved_db = clients.settings, clients._db
    broken_valkey = broken_db = None
    try:
        if llm is not None:
            clients.__dict__["llm"] = llm
        if valkey_down:
            broken_valkey = redis.Redis.from_url(DOWN_REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
            clients.__dict__["valkey"] = broken_valkey
        if postgres_down:
            broken_db = Database(DOWN_DATABASE_URL, max_connections=2, connect_timeout_s=1)
            clients._db = broken_db
        if settings:
            clients.settings = clients.settings.model_copy(update=settings)
        yield clients
    finally:
        for key in ("llm", "valkey"):
            clients.__dict__.pop(key, None)
        clients.__dict__.update(saved_dict)
        clients.settings, clients._db = saved_settings, saved_db
        if broken_valkey is not None:
            broken_valkey.close()
        if broken_db is not None:
            broken_db.close()


def emitted_metrics(output: str) -> dict[str, float]:
    """Metric name -> summed value, from the EMF lines the handler's `log_metrics` printed."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                name, value = metric["Name"], blob[metric["Name"]]
                found[name] = found.get(name, 0) + (sum(value) if isinstance(value, list) else value)
    return found
