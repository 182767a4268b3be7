"""ReverieClient against a small local stub of the HTTP API (real sockets, no mocking library)."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest

from reverie_client import ReverieAPIError, ReverieClient, job_is_final, parse_retry_after

API_KEY = "rk_test_5ecret"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


Reply = tuple[int, dict[str, str], Any]  # status, headers, body (dict → JSON, str → text, None → empty)


@dataclass
class Stub:
    url: str
    seen: list[Seen] = field(default_factory=list)
    route: Callable[[Seen], Reply] = lambda req: (
        404,
        {},
        {"error": {"code": "not_found", "message": "no route"}},
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

    def _serve(self) -> None:
        stub: Stub = self.server.stub  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        req = Seen(
            self.command,
            url.path,
            dict(parse_qsl(url.query)),
            {k.lower(): v for k, v in self.headers.items()},
            json.loads(raw) if raw else None,
        )
        stub.seen.append(req)
        status, headers, body = stub.route(req)
        if isinstance(body, dict | list):
            payload, ctype = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            payload, ctype = body.encode(), "text/html"
        else:
            payload, ctype = b"", None
        self.send_response(status)
        if ctype and status not in (204, 304):
            self.send_header("content-type", ctype)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Stub]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.stub = Stub(url=f"http://127.0.0.1:{httpd.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield httpd.stub  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_authorization_header_is_sent_and_the_key_never_shown(stub: Stub) -> None:
    stub.route = lambda req: (200, {}, {"ok": True, "version": "0.1.0"})
    with ReverieClient(stub.url + "/", API_KEY) as client:
        assert client.status() == {"ok": True, "version": "0.1.0"}
        assert API_KEY not in repr(client)
    assert stub.seen[0].path == "/v1/status"
    assert stub.seen[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_error_shape_is_parsed_into_reverie_api_error(stub: Stub) -> None:
    stub.route = lambda req: (
        422,
        {},
        {"error": {"code": "validation_error", "message": "query is required"}},
    )
    with ReverieClient(stub.url, API_KEY) as client, pytest.raises(ReverieAPIError) as caught:
        client.search("alice", "")
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        422,
        "validation_error",
        "query is required",
    )
    assert API_KEY not in str(caught.value)
    assert stub.seen[0].body == {"user_id": "alice", "query": ""}


def test_an_error_that_is_not_our_shape_keeps_the_raw_text(stub: Stub) -> None:
    stub.route = lambda req: (502, {}, "<html>Bad Gateway from the proxy</html>")
    with ReverieClient(stub.url, API_KEY) as client, pytest.raises(ReverieAPIError) as caught:
        client.status()
    assert caught.value.status == 502
    assert caught.value.code == "http_502"
    assert "Bad Gateway from the proxy" in caught.value.message


def test_list_iterator_follows_next_cursor_to_the_end(stub: Stub) -> None:
    pages = {None: (["m1", "m2"], "c1"), "c1": (["m3", "m4"], "c2"), "c2": (["m5"], None)}

    def route(req: Seen) -> Reply:
        ids, nxt = pages[req.query.get("cursor")]
        return 200, {}, {"memories": [{"id": i, "tier": "semantic"} for i in ids], "next_cursor": nxt}

    stub.route = route
    with ReverieClient(stub.url, API_KEY) as client:
        ids = [m["id"] for m in client.iter_memories("alice", tier="semantic", page_size=2)]
    assert ids == ["m1", "m2", "m3", "m4", "m5"]
    assert [r.query.get("cursor") for r in stub.seen] == [None, "c1", "c2"]
    assert all(r.query["user_id"] == "alice" and r.query["limit"] == "2" for r in stub.seen)
    assert all(r.query["tier"] == "semantic" for r in stub.seen)


def test_list_iterator_stops_on_a_cursor_cycle(stub: Stub) -> None:
    stub.route = lambda req: (200, {}, {"memories": [{"id": "m"}], "next_cursor": "same"})
    with ReverieClient(stub.url, API_KEY) as client, pytest.raises(ReverieAPIError, match="cursor"):
        list(client.iter_memories("alice"))
    assert len(stub.seen) == 2


def test_wait_for_job_honours_retry_after_and_stops_when_every_tier_is_final(stub: Stub) -> None:
    states = [
        {"status": "running", "tiers": {"episodic": "done", "semantic": "running", "procedural": "pending"}},
        {"status": "running", "tiers": {"episodic": "done", "semantic": "running", "procedural": "done"}},
        {
            "status": "done",
            "tiers": {"episodic": "done", "semantic": {"status": "empty"}, "procedural": "dead"},
        },
    ]

    replies: list[Reply] = [
        (200, {"ETag": '"v0"', "Retry-After": "2"}, states[0]),
        (304, {"ETag": '"v0"', "Retry-After": "3"}, None),  # unchanged since the last poll
        (200, {"ETag": '"v2"', "Retry-After": "2"}, states[1]),
        (200, {"ETag": '"v3"'}, states[2]),
        (500, {}, {"error": {"code": "internal_error", "message": "polled past the final state"}}),
    ]
    stub.route = lambda req: replies[len(stub.seen) - 1]
    sleeps: list[float] = []
    with ReverieClient(stub.url, API_KEY, sleep=sleeps.append) as client:
        job = client.wait_for_job("job-1", timeout_s=60, poll=9.0)
    assert job == states[2]
    assert sleeps == [2.0, 3.0, 2.0]  # the server's pace, not poll's
    assert [r.path for r in stub.seen] == ["/v1/jobs/job-1"] * 4
    assert [r.headers.get("if-none-match") for r in stub.seen] == [None, '"v0"', '"v0"', '"v2"']


def test_wait_for_job_uses_poll_without_retry_after_and_times_out(stub: Stub) -> None:
    stub.route = lambda req: (200, {}, {"status": "running", "tiers": {"semantic": "running"}})
    with ReverieClient(stub.url, API_KEY) as client, pytest.raises(TimeoutError, match="job-2"):
        client.wait_for_job("job-2", timeout_s=0.3, poll=0.05)
    assert 3 <= len(stub.seen) <= 12


def test_job_finality_and_retry_after_parsing() -> None:
    assert job_is_final({"tiers": {"a": "done", "b": "empty", "c": "failed", "d": "dead"}})
    assert not job_is_final({"status": "done", "tiers": {"a": "done", "b": "queued"}})
    assert job_is_final({"status": "done", "tiers": {}})
    assert not job_is_final({})
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: go now


def test_endpoints_use_the_contract_paths_and_bodies(stub: Stub) -> None:
    def route(req: Seen) -> Reply:
        if req.method == "DELETE" and req.path.startswith("/v1/memories/"):
            return 204, {}, None
        status = 202 if req.path.endswith("/regenerate") or req.method == "DELETE" else 200
        return status, {}, {"echo": req.path}

    stub.route = route
    with ReverieClient(stub.url, API_KEY) as client:
        assert client.chat("alice", "s1", "hi")["echo"] == "/v1/chat"
        assert client.add_memories("alice", "I like tea", infer=False)["echo"] == "/v1/memories"
        client.get_memory("m-1")
        client.memory_history("m-1")
        assert client.delete_memory("m-1") is None
        client.ask("alice", "diet?")
        client.deep_query("alice", "how has it changed?")
        client.context("alice", session_id="s1", max_tokens=800)
        client.narrative("a/b")
        client.regenerate_narrative("alice")
        client.export_user("alice")
        client.forget_user("alice")
        client.job("j-1")
    got = [(r.method, r.path) for r in stub.seen]
    assert got == [
        ("POST", "/v1/chat"),
        ("POST", "/v1/memories"),
        ("GET", "/v1/memories/m-1"),
        ("GET", "/v1/memories/m-1/history"),
        ("DELETE", "/v1/memories/m-1"),
        ("POST", "/v1/memories/ask"),
        ("POST", "/v1/memories/deep-query"),
        ("GET", "/v1/context"),
        ("GET", "/v1/users/a%2Fb/narrative"),  # a user id cannot change the route
        ("POST", "/v1/users/alice/narrative/regenerate"),
        ("GET", "/v1/users/alice/export"),
        ("DELETE", "/v1/users/alice"),
        ("GET", "/v1/jobs/j-1"),
    ]
    assert stub.seen[0].body == {"user_id": "alice", "session_id": "s1", "message": "hi"}
    assert stub.seen[1].body == {
        "user_id": "alice",
        "messages": [{"role": "user", "content": "I like tea"}],
        "infer": False,
    }
    assert stub.seen[7].query == {"user_id": "alice", "session_id": "s1", "max_tokens": "800"}


def test_record_turn_posts_the_exchange_with_its_idempotency_key(stub: Stub) -> None:
    from reverie.api.mcp.tools import AddTurn
    from reverie_dev.mcp_stdio import HttpTools

    stub.route = lambda req: (202, {}, {"turn_id": "t-1", "job_id": "j-1", "memory_saved": True})
    exchange = [{"role": "user", "content": "I live in Porto"}, {"role": "assistant", "content": "Noted."}]
    with ReverieClient(stub.url, API_KEY) as client:
        assert client.record_turn("alice", "s1", exchange, idempotency_key="k-1")["job_id"] == "j-1"
        client.record_turn("alice", "s1", exchange[:1], metadata={"app": "web"})
        # The stdio MCP server's add_turn is the same call.
        assert HttpTools(client).add_turn("alice", AddTurn(messages=exchange))["memory_saved"] is True
    assert [(r.method, r.path) for r in stub.seen] == [("POST", "/v1/turns")] * 3
    assert stub.seen[0].body == {"user_id": "alice", "session_id": "s1", "messages": exchange}
    assert stub.seen[0].headers["idempotency-key"] == "k-1"
    assert stub.seen[1].body["metadata"] == {"app": "web"} and "idempotency-key" not in stub.seen[1].headers
    assert stub.seen[2].body == {"user_id": "alice", "session_id": "mcp", "messages": exchange}


def test_stdio_mcp_server_forwards_tool_calls_to_the_http_api(stub: Stub) -> None:
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    def route(req: Seen) -> Reply:
        if req.path == "/v1/memories/search" and req.body["query"].strip():
            return 200, {}, {"results": [{"id": "m1", "tier": "semantic", "text": "likes tea", "score": 0.9}]}
        return 400, {}, {"error": {"code": "validation_error", "message": "query must not be blank"}}

    stub.route = route
    layer = str(Path(__file__).resolve().parents[2] / "layers" / "core")
    script = (
        "import sys; from reverie_dev.mcp_stdio import run_stdio; run_stdio(sys.argv[1], sys.argv[2], 'alice')"
    )
    params = StdioServerParameters(
        command=sys.executable,
        args=["-c", script, stub.url, API_KEY],
        env={**os.environ, "PYTHONPATH": layer + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )

    async def main() -> tuple[Any, Any]:
        async with Client(params) as client:
            found = await client.call_tool("search_memory", {"query": "tea", "limit": 3})
            refused = await client.call_tool("search_memory", {"query": "  "})
            return found, refused

    found, refused = anyio.run(main)
    assert not found.is_error
    assert json.loads(found.content[0].text)["results"][0]["id"] == "m1"
    assert refused.is_error
    assert json.loads(refused.content[0].text)["error"]["code"] == "validation_error"
    assert stub.seen[0].body == {"user_id": "alice", "query": "tea", "limit": 3}
    assert stub.seen[0].headers["authorization"] == f"Bearer {API_KEY}"
