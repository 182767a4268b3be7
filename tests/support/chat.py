"""Helpers for the chat tests: API Gateway events as the authorizer leaves them, the chat handler, what reached
the tier queues and tier 1, and holding back the work the chat defers past its response."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from reverie.cache import keys, outbox, working_memory
from reverie.domain.errors import InvalidJob
from reverie.domain.tiers import TIERS, Tier
from reverie.jobs.message import ReflectionJob, parse_job
from reverie.platform import after_response
from reverie_dev.local.context import LambdaContext
from tests.support.functions import load_function


def chat_event(project_id: str | None, body: dict | str, *, headers: dict[str, str] | None = None,
               path: str = "/v1/chat") -> dict[str, Any]:
    """A POST to one of the chat function's routes (/v1/chat, /v1/turns) as API Gateway hands it over."""
    raw = body if isinstance(body, str) else json.dumps(body)
    request_context: dict[str, Any] = {
        "accountId": "123456789012", "apiId": "local", "domainName": "localhost", "domainPrefix": "localhost",
        "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                 "userAgent": "test"},
        "requestId": "test", "routeKey": f"POST {path}", "stage": "$default",
        "time": "21/Nov/2026:12:00:00 +0000", "timeEpoch": 1795176000000,
    }
    if project_id is not None:
        request_context["authorizer"] = {"lambda": {"project_id": project_id}}
    return {
        "version": "2.0", "routeKey": f"POST {path}", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "localhost:3000", **(headers or {})},
        "requestContext": request_context, "isBase64Encoded": False, "body": raw,
    }


def chat_handler():
    return load_function("ChatFunction")


def post_chat(project_id: str | None, body: dict | str, *, key: str | None = None,
              wait_deferred: bool = True, path: str = "/v1/chat") -> tuple[int, dict]:
    """One turn through the handler; then (unless told not to) the work it deferred past its response, the
    publish, is waited for, so what the turn published can be read."""
    headers = {"idempotency-key": key} if key else None
    answer = chat_handler()(chat_event(project_id, body, headers=headers, path=path), LambdaContext())
    if wait_deferred:
        assert after_response.drain(10), "work deferred past the response did not finish"
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else {}


def post_turn(project_id: str | None, body: dict | str, *, key: str | None = None,
              wait_deferred: bool = True) -> tuple[int, dict]:
    """One turn recorded (POST /v1/turns) through the chat function's handler, as `post_chat`."""
    return post_chat(project_id, body, key=key, wait_deferred=wait_deferred, path="/v1/turns")


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

    def job_of(body: str) -> ReflectionJob | None:
        try:
            return parse_job(body)
        except InvalidJob:
            return None

    return take_from_queue(clients, clients.settings.queue_url(tier), project_id, job_of)


def take_from_queue(clients, url: str, project_id: str, parse: Callable[[str], Any]) -> list[Any]:
    """Take the jobs of this project off a queue, parsed with `parse` (None: not a job); others' go back once every
    message was seen. (Put back at once, a FIFO queue would hand the same first ten over again, and a job of this
    project behind ten others' would not be found.)"""
    found, others = [], []
    try:
        while True:
            messages = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                                   VisibilityTimeout=30).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                job = parse(message["Body"])
                if job is not None and job.project_id == project_id:
                    found.append(job)
                    clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    others.append(message["ReceiptHandle"])
    finally:
        for handle in others:
            clients.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)


def nothing_stored(clients, project_id: str) -> bool:
    """No key of the project in Valkey and no job of it on the episodic queue."""
    return valkey_keys_of(clients, project_id) == [] and published(clients, project_id) == []


def drain_all_tiers(clients, project_id: str) -> None:
    """Leave the shared tier queues as a test found them: every job of its project taken off."""
    for tier in TIERS:
        published(clients, project_id, tier)


def tier1(clients, project_id: str, user_id: str, session_id: str) -> list:
    return working_memory.recent_turns(clients.valkey, project_id, user_id, session_id, 1000)


def valkey_keys_of(clients, project_id: str) -> list[str]:
    """Every Valkey key that names the project: a user's (tagged `{project:user}`), a job marker or receipt. Not
    its rate-limit counters, which count requests and hold nothing of what was said, nor a forget's mark (it
    names a forgotten user for 15 minutes so that work in flight is dropped, then expires)."""
    escaped = keys.escape(project_id)
    found = [k.decode() for k in clients.valkey.scan_iter(match="*", count=1000)]
    return [k for k in found if ("{" + escaped + ":" in k or f":{escaped}:" in k)
            and not k.startswith((keys.RATE_LIMIT + ":", "forgotten:"))]


def parked(clients, project_id: str, user_id: str) -> list[ReflectionJob]:
    raw = outbox.parked(clients.valkey, project_id, user_id)
    return sorted((parse_job(v) for v in raw.values()), key=lambda j: j.created_at)


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


def drain_reflection_jobs(clients, project_id: str) -> list[dict]:
    """Take this project's jobs off the tier queues (no reflector runs here), leaving other tests' jobs."""
    taken, others = [], []
    for tier in ("episodic", "semantic", "procedural"):
        url = clients.settings.queue_url(tier)
        while got := clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in got:
                if json.loads(message["Body"]).get("project_id") == project_id:
                    taken.append(json.loads(message["Body"]))
                    clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    others.append((url, message["ReceiptHandle"]))
    for url, handle in others:
        clients.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return taken


def claim_age(clients, job, age_s: float) -> None:
    """What a drainer that died after claiming the job `age_s` ago leaves behind."""
    clients.valkey.hset(keys.outbox_claims(job.project_id, job.user_id), job.job_id, time.time() - age_s)


def user_keys_left(clients, project_id: str, user_id: str) -> list[str]:
    """Every Valkey key of the user (found by scanning, which the code never does), but a forget's mark, which
    is checked to expire within 15 minutes."""
    tag = keys.user_tag(project_id, user_id)
    left = []
    for key in (k.decode() for k in clients.valkey.scan_iter(match="*", count=1000)):
        if tag not in key:
            continue
        if key == keys.forgotten(project_id, user_id):
            assert 0 < clients.valkey.ttl(key) <= 15 * 60
            continue
        left.append(key)
    return left
