"""The MCP endpoint (`handle_mcp`) seen through the official SDK client over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from reverie.api.mcp import transport as mcp_server
from reverie.api.mcp.transport import HttpRequest, handle_mcp, user_id_from_request
from reverie_client import ReverieAPIError

EIGHT_TOOLS = {
    "add_memories",
    "search_memory",
    "list_memories",
    "delete_memories",
    "ask_memory",
    "deep_memory_query",
    "get_context",
    "add_turn",
}
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


class InMemoryTools:
    """A stand-in backend (a dict of memories) so the tests exercise the protocol adapter only."""

    def __init__(self) -> None:
        self.memories: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    def add_memories(self, user_id: str, args: Any) -> dict:
        self.calls.append(("add_memories", user_id))
        memory_id = str(uuid.uuid4())
        self.memories[memory_id] = {
            "id": memory_id,
            "user_id": user_id,
            "tier": "semantic",
            "text": args.text,
            "metadata": args.metadata or {},
        }
        return {"job_id": f"job-{memory_id}"} if args.infer else {"memories": [self.memories[memory_id]]}

    def search_memory(self, user_id: str, args: Any) -> dict:
        self.calls.append(("search_memory", user_id))
        if not args.query.strip():
            raise ReverieAPIError(400, "validation_error", "query must not be blank")
        words = set(args.query.lower().split())
        results = [
            {**m, "score": 1.0}
            for m in self.memories.values()
            if m["user_id"] == user_id and words & set(m["text"].lower().split())
        ]
        return {"results": results[: args.limit]}

    def list_memories(self, user_id: str, args: Any) -> dict:
        self.calls.append(("list_memories", user_id))
        mine = [m for m in self.memories.values() if m["user_id"] == user_id]
        start = int(args.cursor or 0)
        nxt = start + args.limit
        return {"memories": mine[start:nxt], "next_cursor": str(nxt) if nxt < len(mine) else None}

    def delete_memories(self, user_id: str, args: Any) -> dict:
        self.calls.append(("delete_memories", user_id))
        deleted = [i for i in args.memory_ids if self.memories.get(i, {}).get("user_id") == user_id]
        for memory_id in deleted:
            del self.memories[memory_id]
        return {"deleted": deleted, "not_found": [i for i in args.memory_ids if i not in deleted]}

    def ask_memory(self, user_id: str, args: Any) -> dict:
        self.calls.append(("ask_memory", user_id))
        if "boom" in args.question:
            raise RuntimeError("db password=hunter2 at /srv/reverie/store.py line 42")
        return {"answer": "unknown", "citations": []}

    def deep_memory_query(self, user_id: str, args: Any) -> dict:
        self.calls.append(("deep_memory_query", user_id))
        return {"answer": "unknown", "citations": [], "tiers_used": ["semantic"]}

    def get_context(self, user_id: str, args: Any) -> dict:
        self.calls.append(("get_context", user_id))
        return {"rules": [], "memories": [], "recent_turns": [], "tokens": 0, "session_id": args.session_id}

    def add_turn(self, user_id: str, args: Any) -> dict:
        self.calls.append(("add_turn", user_id))
        return {"turn_id": "t-1", "job_id": "job-t-1", "memory_saved": True, "session_id": args.session_id,
                "roles": [m.role for m in args.messages]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK client's connection pool expects
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall
    backend: InMemoryTools

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        request = HttpRequest(
            method=self.command,
            path=url.path,
            # API Gateway v2 hands lower-cased names, duplicates joined with commas: do the same.
            headers={k.lower(): ", ".join(self.headers.get_all(k) or []) for k in self.headers},
            body=self.rfile.read(length) if length else b"",
            query=dict(parse_qsl(url.query)),
        )
        if url.path != "/mcp":
            response = mcp_server.HttpResponse(404, {"content-type": "text/plain"}, b"not found")
        else:
            response = handle_mcp(request, self.server.backend, user_id_from_request(request))  # type: ignore[attr-defined]
        self.server.seen.append((request, response))  # type: ignore[attr-defined]
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                if name != "content-length":
                    self.send_header(name, value)
            self.send_header("content-length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            # A client leaving with a fire-and-forget notification still in flight does not wait for its 202.
            self.server.dropped.append(request.body)  # type: ignore[attr-defined]

    do_POST = do_GET = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.backend = InMemoryTools()  # type: ignore[attr-defined]
    httpd.seen = []  # type: ignore[attr-defined]
    httpd.dropped = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
    for body in httpd.dropped:  # type: ignore[attr-defined]
        assert "id" not in json.loads(body), "a request (not a notification) lost its answer"


def _url(httpd: ThreadingHTTPServer, query: str = "") -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/mcp{query}"


def _payload(result: Any) -> dict[str, Any]:
    """The tool's JSON text, checked to agree with its structured content."""
    payload = json.loads(result.content[0].text)
    assert result.structured_content == payload
    return payload


def test_initialize_negotiates_a_handshake_protocol_version(server: ThreadingHTTPServer) -> None:
    async def main() -> None:
        async with Client(_url(server, "?user_id=alice"), mode="legacy") as client:
            assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
            assert client.server_info is not None and client.server_info.name == "reverie"
            assert client.server_capabilities.tools is not None
            assert "memory" in (client.instructions or "").lower()

    anyio.run(main)
    first_request, first_response = server.seen[0]  # type: ignore[attr-defined]
    assert json.loads(first_request.body)["method"] == "initialize"
    assert first_response.status == 200
    assert first_response.headers["content-type"].startswith("application/json")  # JSON, never SSE


def test_auto_mode_discovers_the_stateless_protocol_version(server: ThreadingHTTPServer) -> None:
    async def main() -> None:
        async with Client(_url(server, "?user_id=alice")) as client:  # mode="auto": server/discover first
            assert client.protocol_version in MODERN_PROTOCOL_VERSIONS
            assert {t.name for t in (await client.list_tools()).tools} == EIGHT_TOOLS

    anyio.run(main)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_list_tools_returns_exactly_the_eight_tools_with_input_schemas(
    server: ThreadingHTTPServer, mode: str
) -> None:
    async def main() -> Any:
        async with Client(_url(server, "?user_id=alice"), mode=mode) as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in anyio.run(main)}
    assert set(tools) == EIGHT_TOOLS
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert tool.description and "\n" not in tool.description
    required = {name: tool.input_schema.get("required", []) for name, tool in tools.items()}
    # OpenMemory's names and parameters, so its users can switch without changing clients.
    assert required["add_memories"] == ["text"]
    assert required["search_memory"] == ["query"]
    assert required["list_memories"] == []
    assert required["delete_memories"] == ["memory_ids"]
    assert required["ask_memory"] == ["question"]
    assert required["deep_memory_query"] == ["query"]
    assert required["get_context"] == []
    assert required["add_turn"] == ["messages"]
    assert set(tools["add_turn"].input_schema["properties"]) == {"messages", "session_id", "metadata"}
    assert set(tools["get_context"].input_schema["properties"]) == {"session_id", "query", "max_tokens"}
    assert tools["delete_memories"].input_schema["properties"]["memory_ids"]["type"] == "array"
    assert tools["search_memory"].annotations.read_only_hint is True
    assert tools["delete_memories"].annotations.destructive_hint is True


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_add_search_list_delete_round_trip(server: ThreadingHTTPServer, mode: str) -> None:
    backend: InMemoryTools = server.backend  # type: ignore[attr-defined]

    async def main() -> None:
        async with Client(_url(server, "?user_id=alice"), mode=mode) as client:
            added = await client.call_tool("add_memories", {"text": "I am vegetarian and live in Lisbon"})
            assert not added.is_error
            assert _payload(added)["job_id"].startswith("job-")

            found = await client.call_tool("search_memory", {"query": "where in Lisbon"})
            assert not found.is_error
            results = _payload(found)["results"]
            assert [r["text"] for r in results] == ["I am vegetarian and live in Lisbon"]
            memory_id = results[0]["id"]

            listed = _payload(await client.call_tool("list_memories", {}))
            assert [m["id"] for m in listed["memories"]] == [memory_id]

            deleted = await client.call_tool("delete_memories", {"memory_ids": [memory_id]})
            assert _payload(deleted) == {"deleted": [memory_id], "not_found": []}

            again = _payload(await client.call_tool("search_memory", {"query": "Lisbon"}))
            assert again["results"] == []

    anyio.run(main)
    assert backend.memories == {}
    assert {user for _, user in backend.calls} == {"alice"}


def test_the_other_tools_reach_the_backend(server: ThreadingHTTPServer) -> None:
    backend: InMemoryTools = server.backend  # type: ignore[attr-defined]

    async def main() -> None:
        async with Client(_url(server, "?user_id=alice"), mode="legacy") as client:
            assert (
                _payload(await client.call_tool("ask_memory", {"question": "diet?"}))["answer"] == "unknown"
            )
            deep = _payload(await client.call_tool("deep_memory_query", {"query": "how did it change?"}))
            assert deep["tiers_used"] == ["semantic"]
            ctx = _payload(await client.call_tool("get_context", {"session_id": "s1", "max_tokens": 500}))
            assert ctx["session_id"] == "s1"
            turn = _payload(await client.call_tool("add_turn", {"messages": [
                {"role": "user", "content": "I live in Porto"}, {"role": "assistant", "content": "Noted."}]}))
            assert turn["roles"] == ["user", "assistant"] and turn["session_id"] == "mcp"

    anyio.run(main)
    assert [name for name, _ in backend.calls] == ["ask_memory", "deep_memory_query", "get_context", "add_turn"]


def test_user_header_names_the_user_and_wins_over_the_query(server: ThreadingHTTPServer) -> None:
    backend: InMemoryTools = server.backend  # type: ignore[attr-defined]

    async def main() -> None:
        async with httpx2.AsyncClient(headers={"X-Reverie-User": "bob"}) as http:
            transport = streamable_http_client(_url(server, "?user_id=alice"), http_client=http)
            async with Client(transport, mode="legacy") as client:
                result = await client.call_tool("add_memories", {"text": "likes tea", "infer": False})
                assert not result.is_error
                assert _payload(result)["memories"][0]["user_id"] == "bob"

    anyio.run(main)
    assert backend.calls == [("add_memories", "bob")]


def test_missing_user_gives_a_clear_tool_error(server: ThreadingHTTPServer) -> None:
    backend: InMemoryTools = server.backend  # type: ignore[attr-defined]

    async def main() -> Any:
        async with Client(_url(server), mode="legacy") as client:  # no header, no ?user_id=
            return await client.call_tool("search_memory", {"query": "anything"})

    result = anyio.run(main)
    assert result.is_error
    error = _payload(result)["error"]
    assert error["code"] == "missing_user"
    assert "X-Reverie-User" in error["message"] and "user_id" in error["message"]
    assert backend.calls == []  # the backend is never asked on nobody's behalf


def test_backend_validation_error_becomes_a_tool_error_with_its_code(server: ThreadingHTTPServer) -> None:
    async def main() -> Any:
        async with Client(_url(server, "?user_id=alice")) as client:
            return await client.call_tool("search_memory", {"query": "   "})

    result = anyio.run(main)
    assert result.is_error
    assert _payload(result) == {"error": {"code": "validation_error", "message": "query must not be blank"}}
    _, response = server.seen[-1]  # type: ignore[attr-defined]
    assert response.status == 200  # a tool error, not an HTTP or JSON-RPC failure


def test_unexpected_backend_exception_is_an_internal_error_without_details(
    server: ThreadingHTTPServer,
) -> None:
    async def main() -> Any:
        async with Client(_url(server, "?user_id=alice"), mode="legacy") as client:
            return await client.call_tool("ask_memory", {"question": "boom"})

    result = anyio.run(main)
    assert result.is_error
    assert _payload(result)["error"]["code"] == "internal_error"
    _, response = server.seen[-1]  # type: ignore[attr-defined]
    assert response.status == 200
    for leak in (b"hunter2", b"Traceback", b"store.py", b"RuntimeError"):
        assert leak not in response.body


def test_requests_need_no_server_side_session(server: ThreadingHTTPServer) -> None:
    url = _url(server, "?user_id=alice")

    async def add_with_first_client() -> None:
        async with Client(url, mode="legacy") as client:
            assert not (await client.call_tool("add_memories", {"text": "plays the cello"})).is_error

    anyio.run(add_with_first_client)
    assert all("mcp-session-id" not in response.headers for _, response in server.seen)  # type: ignore[attr-defined]

    # A cold start in between: the process-wide server object is rebuilt, nothing carries over.
    mcp_server._http_server = None

    # A bare tools/call with no initialize before it and no session header is answered on its own.
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "search_memory", "arguments": {"query": "cello"}},
    }
    raw = httpx2.post(url, json=call, headers={**HEADERS, "mcp-protocol-version": "2025-06-18"})
    assert raw.status_code == 200
    assert "mcp-session-id" not in raw.headers
    text = raw.json()["result"]["content"][0]["text"]
    assert json.loads(text)["results"][0]["text"] == "plays the cello"

    async def list_with_second_client() -> Any:
        async with Client(url) as client:
            return _payload(await client.call_tool("list_memories", {}))

    assert [m["text"] for m in anyio.run(list_with_second_client)["memories"]] == ["plays the cello"]


def test_concurrent_requests_keep_their_own_user(server: ThreadingHTTPServer) -> None:
    users = [f"user-{i}" for i in range(6)]

    async def add_as(user: str) -> None:
        async with Client(_url(server, f"?user_id={user}"), mode="2026-07-28") as client:
            for n in range(3):
                await client.call_tool("add_memories", {"text": f"{user} fact {n}"})

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for user in users:
                tg.start_soon(add_as, user)

    anyio.run(main)
    memories = server.backend.memories.values()  # type: ignore[attr-defined]
    assert len(memories) == 18
    assert all(m["text"].startswith(m["user_id"] + " ") for m in memories)


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_get_and_delete_answer_405_on_a_stateless_endpoint(server: ThreadingHTTPServer, method: str) -> None:
    for extra in ({}, {"mcp-protocol-version": "2025-06-18"}, {"mcp-protocol-version": "2026-07-28"}):
        response = httpx2.request(
            method, _url(server, "?user_id=alice"), headers={**HEADERS, **extra}, timeout=5
        )
        assert response.status_code == 405, (method, extra, response.text)
        assert "POST" in response.headers["allow"]
