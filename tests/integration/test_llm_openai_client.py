"""OpenAICompatibleLLM against a local, scriptable server that speaks the OpenAI HTTP API: request shape,
usage, retries done by the SDK, error mapping and output validation. No real provider is called."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openai._base_client
import pytest
from pydantic import BaseModel

from reverie.llm import (
    LLMBadRequest,
    LLMInvalidOutput,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    OpenAICompatibleLLM,
)

API_KEY = "sk-test-0123456789abcdef"
# Retry-After in milliseconds, which the SDK honours instead of its own (0.5 s, 1 s, ...) backoff.
NO_BACKOFF = {"retry-after-ms": "1"}


# --- a scriptable OpenAI-compatible server ------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    # None: a well-formed default answer for the path; a callable gets the request JSON.
    body: dict | str | Callable[[dict], dict] | None = None
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def error_body(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def chat_body(content: str, *, prompt_tokens: int = 11, completion_tokens: int = 7) -> dict:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "stub-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def embeddings_body(vectors: list[list[float]], *, indices: list[int] | None = None, tokens: int = 5) -> dict:
    indices = list(range(len(vectors))) if indices is None else indices
    return {
        "object": "list",
        "model": "stub-embed",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in zip(indices, vectors, strict=True)
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def basis_vectors(inputs: list[str], dimensions: int) -> list[list[float]]:
    """Input i gets (i + 1) on axis i, so order and normalisation are both visible in the result."""
    return [
        [float(i + 1) if j == i % dimensions else 0.0 for j in range(dimensions)] for i in range(len(inputs))
    ]


class StubOpenAI:
    def __init__(self, embed_dimensions: int = 4) -> None:
        self.embed_dimensions = embed_dimensions
        self.chat_content = "hello from the stub"
        self.requests: list[SeenRequest] = []
        self.fallback: Reply | None = None  # answers once the scripted queue is empty
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.stub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _take(self, request: SeenRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
        return self.fallback or Reply()

    def _default_body(self, path: str, body: dict) -> dict:
        if path.endswith("/embeddings"):
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            return embeddings_body(basis_vectors(inputs, body.get("dimensions", self.embed_dimensions)))
        return chat_body(self.chat_content)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        stub: StubOpenAI = self.server.stub  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.loads(raw or b"{}")
        request = SeenRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        reply = stub._take(request)
        if reply.delay_s and stub._stopping.wait(reply.delay_s):
            return
        payload = reply.body if reply.body is not None else stub._default_body(self.path, body)
        if callable(payload):
            payload = payload(body)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        try:
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and went away: that is what the test wanted

    def log_message(self, format: str, *args: Any) -> None:
        pass


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def server():
    stub = StubOpenAI()
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    # Timeouts and refused connections carry no Retry-After, so the SDK's own first backoff step applies.
    monkeypatch.setattr(openai._base_client, "INITIAL_RETRY_DELAY", 0.01, raising=False)


@pytest.fixture
def make(server):
    def factory(**overrides: Any) -> OpenAICompatibleLLM:
        options: dict[str, Any] = {
            "base_url": server.url,
            "api_key": API_KEY,
            "chat_model": "gpt-test",
            "embedding_model": "text-embedding-3-small",
            "dimensions": 4,
            "timeout_s": 2.0,
            "max_retries": 2,
        }
        options.update(overrides)
        return OpenAICompatibleLLM(**options)

    return factory


class Person(BaseModel):
    name: str
    age: int | None
    tags: list[str]


MESSAGES = [
    {"role": "system", "content": "You extract people."},
    {"role": "user", "content": "Ana is 31 and likes climbing."},
]


# --- request shape and usage -------------------------------------------------------------------------


def test_chat_sends_model_messages_and_bearer_key_and_maps_usage(server, make):
    completion = make().chat(MESSAGES, max_tokens=50)

    assert completion.text == "hello from the stub"
    assert (completion.usage.model, completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        "gpt-test",
        11,
        7,
    )
    assert completion.usage.total_tokens == 18 and completion.usage.calls == 1
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["model"] == "gpt-test"
    assert request.body["messages"] == MESSAGES
    assert request.body["max_tokens"] == 50
    assert "response_format" not in request.body


def test_chat_omits_max_tokens_when_not_given(server, make):
    make().chat(MESSAGES)
    assert "max_tokens" not in server.requests[0].body


def test_structured_sends_a_strict_json_schema_and_parses_the_answer(server, make):
    server.chat_content = json.dumps({"name": "Ana", "age": 31, "tags": ["climbing"]})

    result = make().structured(MESSAGES, Person, purpose="extract_semantic")

    assert result.value == Person(name="Ana", age=31, tags=["climbing"])
    assert result.usage.prompt_tokens == 11 and result.usage.completion_tokens == 7
    (request,) = server.requests
    assert request.body["messages"] == MESSAGES
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Person"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["age", "name", "tags"]


def test_json_object_mode_puts_the_schema_in_the_system_prompt_and_tolerates_fences(server, make):
    server.chat_content = '```json\n{"name": "Ana", "age": null, "tags": []}\n```'

    result = make(structured_mode="json_object").structured(MESSAGES, Person, purpose="extract_semantic")

    assert result.value == Person(name="Ana", age=None, tags=[])
    body = server.requests[0].body
    assert body["response_format"] == {"type": "json_object"}
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You extract people.")
    assert '"properties"' in system["content"] and "JSON" in system["content"]
    assert body["messages"][1:] == MESSAGES[1:]


def test_unknown_structured_mode_is_rejected():
    with pytest.raises(ValueError, match="structured_mode"):
        OpenAICompatibleLLM(
            base_url="http://127.0.0.1:9/v1",
            api_key="k",
            chat_model="m",
            embedding_model="e",
            dimensions=4,
            structured_mode="tools",
        )


@pytest.mark.parametrize(
    "content",
    [
        "I think Ana is 31.",  # not JSON at all
        '{"name": "Ana", "age": 31}',  # a required field missing
        '{"name": "Ana", "age": "thirty-one", "tags": []}',  # wrong type
        "",
    ],
)
def test_structured_output_that_does_not_fit_the_schema_raises_invalid_output(server, make, content):
    server.chat_content = content

    with pytest.raises(LLMInvalidOutput) as info:
        make().structured(MESSAGES, Person, purpose="extract_semantic")

    assert info.value.retryable
    assert "Person" in str(info.value)
    assert len(server.requests) == 1  # parsing failures are the caller's to retry, not the transport's


def test_embed_sends_one_batched_request_with_dimensions_and_returns_unit_vectors(server, make):
    result = make().embed(["alpha", "beta", "gamma"])

    (request,) = server.requests
    assert request.path == "/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["model"] == "text-embedding-3-small"
    assert request.body["input"] == ["alpha", "beta", "gamma"]
    assert request.body["dimensions"] == 4
    assert request.body["encoding_format"] == "float"
    assert result.vectors == [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    assert (result.usage.model, result.usage.prompt_tokens, result.usage.calls) == (
        "text-embedding-3-small",
        5,
        1,
    )


def test_embed_normalises_vectors(server, make):
    server.fallback = Reply(body=embeddings_body([[3.0, 4.0, 0.0, 0.0]]))
    (vector,) = make().embed(["x"]).vectors
    assert vector == pytest.approx([0.6, 0.8, 0.0, 0.0])
    assert math.isclose(sum(x * x for x in vector), 1.0)


def test_embed_does_not_send_dimensions_to_other_models(server, make):
    make(embedding_model="nomic-embed-text").embed(["alpha"])
    assert "dimensions" not in server.requests[0].body


def test_embeddings_returned_out_of_order_are_put_back_in_input_order(server, make):
    def reversed_answer(request: dict) -> dict:
        vectors = basis_vectors(request["input"], 4)
        order = list(reversed(range(len(vectors))))
        return embeddings_body([vectors[i] for i in order], indices=order)

    server.fallback = Reply(body=reversed_answer)
    result = make().embed(["a", "b", "c"])
    assert result.vectors == [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]


def test_embedding_of_the_wrong_length_raises_invalid_output(server, make):
    server.fallback = Reply(body=embeddings_body([[1.0, 0.0, 0.0]]))
    with pytest.raises(LLMInvalidOutput, match="3 dimensions, expected 4"):
        make().embed(["a"])


def test_embedding_count_mismatch_raises_invalid_output(server, make):
    server.fallback = Reply(body=embeddings_body([[1.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(LLMInvalidOutput):
        make().embed(["a", "b"])


def test_embedding_nothing_makes_no_request(server, make):
    result = make().embed([])
    assert result.vectors == [] and result.usage.calls == 0
    assert server.requests == []


# --- retries (the SDK's) and error mapping -----------------------------------------------------------


def test_slow_server_raises_timeout_after_all_attempts(server, make):
    server.fallback = Reply(delay_s=5.0)
    timeout_s, max_retries = 0.3, 1
    llm = make(timeout_s=timeout_s, max_retries=max_retries)

    start = time.perf_counter()
    with pytest.raises(LLMTimeout) as info:
        llm.chat(MESSAGES)
    elapsed = time.perf_counter() - start

    assert info.value.retryable
    assert len(server.requests) == max_retries + 1
    assert elapsed < timeout_s * (max_retries + 1) + 1.0


def test_a_call_with_a_budget_is_over_within_it_retries_included(server, make):
    server.fallback = Reply(delay_s=5.0)
    llm = make(timeout_s=2.0, max_retries=3)

    start = time.perf_counter()
    with pytest.raises(LLMTimeout):
        llm.chat(MESSAGES, timeout_s=0.5)
    elapsed = time.perf_counter() - start

    # one attempt of 0.5 s fits the budget; a second would not
    assert len(server.requests) == 1 and elapsed < 1.5


def test_a_budget_that_fits_several_attempts_allows_that_many_retries(server, make):
    server.fallback = Reply(status=500, body=error_body("boom", "server_error"), headers=NO_BACKOFF)

    with pytest.raises(LLMUnavailable):
        make(timeout_s=0.4, max_retries=5).embed(["a"], timeout_s=1.0)

    assert len(server.requests) == 2  # 1.0 s holds two attempts of 0.4 s


def test_a_call_with_no_time_left_is_not_made(server, make):
    with pytest.raises(LLMTimeout):
        make().structured(MESSAGES, Person, purpose="extract", timeout_s=0)
    assert server.requests == []


def test_rate_limit_then_success_is_retried_by_the_sdk(server, make):
    server.script(Reply(status=429, body=error_body("slow down", "rate_limit_exceeded"), headers=NO_BACKOFF))

    completion = make().chat(MESSAGES)

    assert completion.text == "hello from the stub"
    assert len(server.requests) == 2
    assert server.requests[1].body == server.requests[0].body


def test_rate_limited_on_every_try_raises_rate_limited(server, make):
    server.fallback = Reply(
        status=429, body=error_body("slow down", "rate_limit_exceeded"), headers=NO_BACKOFF
    )

    with pytest.raises(LLMRateLimited) as info:
        make(max_retries=2).embed(["a"])

    assert info.value.status == 429 and info.value.retryable
    assert len(server.requests) == 3


def test_server_error_on_every_try_raises_unavailable_after_max_retries_plus_one(server, make):
    server.fallback = Reply(status=500, body=error_body("boom", "server_error"), headers=NO_BACKOFF)

    with pytest.raises(LLMUnavailable) as info:
        make(max_retries=3).chat(MESSAGES)

    assert info.value.status == 500 and info.value.retryable
    assert len(server.requests) == 4


def test_bad_request_is_not_retried(server, make):
    server.script(Reply(status=400, body=error_body("messages: field required"), headers=NO_BACKOFF))
    # Were it retried, the next attempt would succeed and the test would fail.

    with pytest.raises(LLMBadRequest) as info:
        make(max_retries=3).chat(MESSAGES)

    assert info.value.status == 400 and not info.value.retryable
    assert "field required" in str(info.value)
    assert len(server.requests) == 1


def test_auth_failure_message_never_contains_the_api_key(server, make):
    server.script(
        Reply(status=401, body=error_body(f"Incorrect API key provided: {API_KEY}.", "invalid_api_key"))
    )

    with pytest.raises(LLMBadRequest) as info:
        make().structured(MESSAGES, Person, purpose="extract_semantic")

    assert info.value.status == 401
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value)
    assert "Incorrect API key" in str(info.value)
    assert len(server.requests) == 1


def test_refused_connection_raises_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    llm = OpenAICompatibleLLM(
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key=API_KEY,
        chat_model="m",
        embedding_model="e",
        dimensions=4,
        timeout_s=1.0,
        max_retries=1,
    )
    with pytest.raises(LLMUnavailable) as info:
        llm.embed(["a"])
    assert info.value.retryable and info.value.status is None
