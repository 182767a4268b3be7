"""The pattern for clients that stream from their own model, through the local stack: GET /v1/context before the
model's call, POST /v1/turns after it. The turn is in the session's tier 1 at once, its job is learned, and the next
context recalls it. And the README's example, run as written against a streaming OpenAI-compatible server."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reverie.cache import working_memory
from reverie_client import ReverieClient

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
JOB_TIMEOUT_S = 60


@pytest.fixture
def rv(stack):
    with ReverieClient(stack.base_url, stack.api_key, sleep=lambda s: time.sleep(min(s, 0.2))) as rv:
        yield rv


def mentions(items: list[dict[str, Any]], word: str) -> bool:
    return any(word.lower() in item["text"].lower() for item in items)


def test_context_then_a_recorded_turn_is_in_tier_1_at_once_learned_and_recalled_by_the_next_context(stack, rv):
    user = f"e2e-stream-{secrets.token_hex(4)}"
    before = rv.context(user, session_id="s1", query="Where do I live?")
    assert before["recent_turns"] == [] and before["memories"] == [] and before["rules"] == []

    # ... the caller's own model streams its reply here ...
    said = [{"role": "user", "content": "I live in Porto and I prefer short answers."},
            {"role": "assistant", "content": "Noted: Porto, and short answers."}]
    recorded = rv.record_turn(user, "s1", said, idempotency_key=f"turn-{user}")
    assert recorded["memory_saved"] is True

    # In the session's tier 1 at once: the very next context has it, as does Valkey itself.
    now = rv.context(user, session_id="s1")
    assert [(t["role"], t["content"]) for t in now["recent_turns"]] == [(m["role"], m["content"]) for m in said]
    kept = working_memory.recent_turns(stack.clients.valkey, stack.project_id, user, "s1", 10)
    assert [t.turn_id for t in kept] == [f"{recorded['turn_id']}:0", f"{recorded['turn_id']}:1"]
    assert rv.record_turn(user, "s1", said, idempotency_key=f"turn-{user}") == recorded  # a retry: kept once

    job = rv.wait_for_job(recorded["job_id"], timeout_s=JOB_TIMEOUT_S)
    assert job["status"] == "done" and set(job["tiers"]) == {"episodic", "semantic", "procedural"}, job

    # The next conversation's context recalls what was said.
    later = rv.context(user, session_id="s2", query="Where do I live?")
    assert mentions(later["memories"], "Porto"), later
    assert mentions(later["rules"], "short answers"), later
    assert later["recent_turns"] == []  # another session's tier 1
    assert len(working_memory.recent_turns(stack.clients.valkey, stack.project_id, user, "s1", 10)) == 2


# ---------------------------------------------------------------- the README's example, run as written


REPLY = ["Noted", ": Porto", ", and", " short", " answers."]


class _StreamingModel(BaseHTTPRequestHandler):
    """POST /v1/chat/completions with stream=true, answered as server-sent events, a few words per chunk."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        self.server.requests.append(body)  # type: ignore[attr-defined]
        assert self.path == "/v1/chat/completions" and body["stream"] is True
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        chunks = [{"role": "assistant", "content": piece} for piece in REPLY] + [{}]
        for i, delta in enumerate(chunks):
            event = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if not delta else None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            if i == 0:
                time.sleep(0.01)
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def streaming_model() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StreamingModel)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Streaming from your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_streams_between_the_two_calls_and_the_turn_is_remembered(
        stack, rv, streaming_model, monkeypatch, capsys):
    monkeypatch.setenv("REVERIE_URL", stack.base_url)
    monkeypatch.setenv("REVERIE_API_KEY", stack.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{streaming_model.server_address[1]}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stub")
    example: dict[str, Any] = {}
    exec(compile(readme_example(), str(README), "exec"), example)
    user = f"e2e-readme-{secrets.token_hex(4)}"
    try:
        text = example["chat"](user, "s1", "I live in Porto and I prefer short answers.")
        assert text == "".join(REPLY) and "".join(REPLY) in capsys.readouterr().out  # printed as it streamed
        example["chat"](user, "s1", "What did I just say?")
    finally:
        example["memory"].close()

    first, second = streaming_model.requests  # type: ignore[attr-defined]
    assert first["messages"][0]["role"] == "system"
    assert first["messages"][1:] == [{"role": "user", "content": "I live in Porto and I prefer short answers."}]
    # The second prompt holds the first exchange: it was recorded in the session's tier 1 before it.
    assert second["messages"][1:3] == [{"role": "user", "content": "I live in Porto and I prefer short answers."},
                                       {"role": "assistant", "content": "".join(REPLY)}]
    turns = rv.context(user, session_id="s1")["recent_turns"]
    assert [t["content"] for t in turns] == ["I live in Porto and I prefer short answers.", "".join(REPLY),
                                             "What did I just say?", "".join(REPLY)]
