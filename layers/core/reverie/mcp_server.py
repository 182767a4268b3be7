"""Reverie's MCP endpoint: memory tools on the official MCP SDK, served statelessly in-process for Lambda.

`handle_mcp` answers one `POST /mcp` (streamable HTTP, JSON responses, no sessions); `run_stdio` serves the
same tools over stdio for desktop clients, forwarding to the HTTP API through `ReverieClient`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextvars
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import urlencode

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

__all__ = [
    "USER_HEADER",
    "USER_QUERY_PARAM",
    "HttpMemoryTools",
    "HttpRequest",
    "HttpResponse",
    "MemoryTools",
    "build_mcp_server",
    "handle_mcp",
    "request_from_apigw_event",
    "response_to_apigw",
    "run_stdio",
    "user_id_from_request",
]

logger = logging.getLogger(__name__)

USER_HEADER = "x-reverie-user"
USER_QUERY_PARAM = "user_id"
TOOL_NAMES = (
    "add_memories",
    "search_memory",
    "list_memories",
    "delete_memories",
    "ask_memory",
    "deep_memory_query",
    "get_context",
)
MISSING_USER_MESSAGE = (
    "No user given: add the header X-Reverie-User: <user id> or the query parameter ?user_id=<user id> "
    "to the MCP server URL in your client's configuration."
)
_INSTRUCTIONS = (
    "Long-term memory about the user. Search it before answering anything that may depend on earlier "
    "conversations; add to it when the user shares lasting facts, preferences or asks you to remember."
)

Tier = Literal["episodic", "semantic", "procedural"]


class MemoryTools(Protocol):
    """The memory operations behind the tools; the project is already resolved from the API key."""

    def add_memories(
        self, user_id: str, text: str, infer: bool = True, metadata: dict | None = None
    ) -> dict: ...
    def search_memory(
        self, user_id: str, query: str, limit: int = 10, tiers: list[str] | None = None
    ) -> dict: ...
    def list_memories(
        self, user_id: str, tier: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict: ...
    def delete_memories(self, user_id: str, memory_ids: list[str]) -> dict: ...
    def ask_memory(self, user_id: str, question: str) -> dict: ...
    def deep_memory_query(self, user_id: str, query: str) -> dict: ...
    def get_context(
        self,
        user_id: str,
        session_id: str | None = None,
        query: str | None = None,
        max_tokens: int | None = None,
    ) -> dict: ...


# What a tool call acts on: the backend and the user (None when the client's configuration names none).
ToolsForRequest = Callable[[], tuple[MemoryTools, str | None]]


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


# --- tools -----------------------------------------------------------------------------------------


def _result(payload: Any, *, is_error: bool = False) -> CallToolResult:
    text = json.dumps(payload, default=str, ensure_ascii=False)
    decoded = json.loads(text)  # what the client will see, so structured content matches the text exactly
    structured = decoded if isinstance(decoded, dict) else {"result": decoded}
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured, is_error=is_error
    )


def _error(code: str, message: str) -> CallToolResult:
    return _result({"error": {"code": code, "message": message}}, is_error=True)


def _invoke(tools_for_request: ToolsForRequest, name: str, **kwargs: Any) -> CallToolResult:
    """Run one backend call; every outcome becomes a tool result, failures never a protocol error."""
    try:
        tools, user_id = tools_for_request()
        if not user_id:
            return _error("missing_user", MISSING_USER_MESSAGE)
        return _result(getattr(tools, name)(user_id, **kwargs))
    except Exception as exc:
        status, code = getattr(exc, "status", None), getattr(exc, "code", None)
        if isinstance(status, int) and isinstance(code, str) and code:
            # Our API errors are written for callers (validation, not found...): the model can act on them.
            message = getattr(exc, "message", None) or str(exc) or code
            logger.info("MCP tool %s answered %s %s", name, status, code)
            return _error(code, str(message))
        # Anything else is a crash: its text and traceback stay in our logs, not in the model's context.
        logger.exception("MCP tool %s failed", name)
        return _error("internal_error", "The memory service failed while running this tool; try again later.")


_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def build_mcp_server(tools_for_request: ToolsForRequest) -> MCPServer:
    """The SDK server with Reverie's seven memory tools; `tools_for_request` says whom each call acts on."""
    server = MCPServer(
        "reverie",
        title="Reverie memory",
        instructions=_INSTRUCTIONS,
        version="0.1.0",
        log_level="WARNING",
    )

    # Names and required parameters follow OpenMemory's, so its users can switch without changing clients.
    # Tools are plain functions: the SDK runs them on a worker thread, so a blocking backend is fine.
    def add_memories(
        text: Annotated[str, Field(min_length=1, description="What to remember, in natural language.")],
        infer: Annotated[
            bool, Field(description="Extract facts from the text (true) or store it verbatim (false).")
        ] = True,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="Optional JSON metadata to keep with the memory.")
        ] = None,
    ) -> CallToolResult:
        return _invoke(tools_for_request, "add_memories", text=text, infer=infer, metadata=metadata)

    def search_memory(
        query: Annotated[str, Field(min_length=1, description="What to look for, in natural language.")],
        limit: Annotated[int, Field(ge=1, le=100, description="Most results to return.")] = 10,
        tiers: Annotated[
            list[Tier] | None, Field(description="Only these memory tiers (default: all).")
        ] = None,
    ) -> CallToolResult:
        return _invoke(tools_for_request, "search_memory", query=query, limit=limit, tiers=tiers)

    def list_memories(
        tier: Annotated[Tier | None, Field(description="Only this memory tier (default: all).")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="Page size.")] = 50,
        cursor: Annotated[
            str | None, Field(description="next_cursor from the previous page, to get the next one.")
        ] = None,
    ) -> CallToolResult:
        return _invoke(tools_for_request, "list_memories", tier=tier, limit=limit, cursor=cursor)

    def delete_memories(
        memory_ids: Annotated[
            list[str], Field(min_length=1, max_length=100, description="Ids of the memories to delete.")
        ],
    ) -> CallToolResult:
        return _invoke(tools_for_request, "delete_memories", memory_ids=memory_ids)

    def ask_memory(
        question: Annotated[str, Field(min_length=1, description="A question about the user.")],
    ) -> CallToolResult:
        return _invoke(tools_for_request, "ask_memory", question=question)

    def deep_memory_query(
        query: Annotated[
            str, Field(min_length=1, description="A question needing reasoning across memories.")
        ],
    ) -> CallToolResult:
        return _invoke(tools_for_request, "deep_memory_query", query=query)

    def get_context(
        session_id: Annotated[
            str | None, Field(description="Current conversation id, for its recent turns.")
        ] = None,
        query: Annotated[
            str | None, Field(description="The user's current message, to pick memories.")
        ] = None,
        max_tokens: Annotated[
            int | None, Field(ge=1, description="Token budget for the whole block.")
        ] = None,
    ) -> CallToolResult:
        return _invoke(
            tools_for_request, "get_context", session_id=session_id, query=query, max_tokens=max_tokens
        )

    descriptions = {
        add_memories: "Store something worth remembering about the user: call it whenever they share facts "
        "about themselves, their preferences or plans, or ask you to remember something.",
        search_memory: "Search the user's memories by meaning; call it before answering anything that may "
        "depend on what they said in earlier conversations.",
        list_memories: "List the user's stored memories a page at a time (pass next_cursor back as cursor).",
        delete_memories: "Delete the user's memories with these ids (ids come from search_memory or "
        "list_memories); use when they ask you to forget something.",
        ask_memory: "Answer a question about the user from their memories, citing the ids of the memories "
        "used.",
        deep_memory_query: "Answer a complex question (multi-step, over time, or across topics) by reasoning "
        "over all memory tiers; slower than ask_memory.",
        get_context: "Get a ready-made context block for this user (profile narrative, rules, relevant "
        "memories, recent turns) within a token budget; call it at the start of a conversation.",
    }
    annotations = {
        add_memories: ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False),
        delete_memories: ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    }
    for fn, description in descriptions.items():
        server.add_tool(fn, description=description, annotations=annotations.get(fn, _READ_ONLY))
    return server


# --- the HTTP endpoint -------------------------------------------------------------------------------

# The backend and user of the request being served. handle_mcp runs each request in its own event loop,
# and the SDK's tasks and worker threads inherit context variables, so concurrent requests never mix.
_BINDING: contextvars.ContextVar[tuple[MemoryTools, str | None]] = contextvars.ContextVar(
    "reverie_mcp_binding"
)


def _bound_tools() -> tuple[MemoryTools, str | None]:
    try:
        return _BINDING.get()
    except LookupError:
        raise RuntimeError("MCP tool called outside handle_mcp") from None


_server_lock = threading.Lock()
_http_server: MCPServer | None = None


def _shared_server() -> MCPServer:
    # The tool definitions (and their JSON schemas) are built once per process, not per request.
    global _http_server
    with _server_lock:
        if _http_server is None:
            _http_server = build_mcp_server(_bound_tools)
        return _http_server


def user_id_from_request(request: HttpRequest) -> str | None:
    """The user the client's MCP configuration names: header X-Reverie-User, else query parameter user_id."""
    for name, value in request.headers.items():
        if name.lower() == USER_HEADER and value.strip():
            return value.strip()
    value = (request.query or {}).get(USER_QUERY_PARAM, "")
    return value.strip() or None


def _jsonrpc_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> HttpResponse:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}).encode()
    return HttpResponse(status, {"content-type": "application/json", **(headers or {})}, body)


def _header_bytes(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # HTTP allows only latin-1 on the wire; keep other text rather than fail
        return value.encode("utf-8")


def _asgi_scope(request: HttpRequest) -> dict[str, Any]:
    headers: list[tuple[bytes, bytes]] = [
        # ASGI wants lower-case names; the SDK matches MCP headers (mcp-protocol-version...) byte for byte.
        (name.lower().encode("latin-1"), _header_bytes(value))
        for name, value in request.headers.items()
        if name.lower() != "content-length"
    ]
    # The body may have been base64-decoded by API Gateway: the length the SDK checks must be the real one.
    headers.append((b"content-length", str(len(request.body)).encode()))
    host = next((v for k, v in request.headers.items() if k.lower() == "host"), "localhost")
    query_string = urlencode(request.query or {}).encode()
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method.upper(),
        "scheme": "https",
        "path": request.path or "/mcp",
        "raw_path": (request.path or "/mcp").encode(),
        "query_string": query_string,
        "root_path": "",
        "headers": headers,
        "client": None,
        "server": (host.split(":")[0], 443),
        "state": {},
    }


async def _serve(request: HttpRequest, tools: MemoryTools, user_id: str | None) -> HttpResponse:
    _BINDING.set((tools, user_id))
    status: int | None = None
    response_headers: dict[str, str] = {}
    chunks: list[bytes] = []
    body_delivered = False
    finished = anyio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal body_delivered
        if not body_delivered:
            body_delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        # Like a real server: the client "stays connected" until the response is complete.
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for raw_name, raw_value in message.get("headers", []):
                name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                response_headers[name] = (
                    f"{response_headers[name]}, {value}" if name in response_headers else value
                )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                finished.set()

    # A fresh stateless manager per request: its run() opens the task group the SDK needs and closes it
    # before we return, so nothing is left running (or frozen mid-flight) between Lambda invocations.
    manager = StreamableHTTPSessionManager(
        # The manager takes the low-level server; MCPServer keeps it here (the SDK's own Client reads it too).
        app=_shared_server()._lowlevel_server,
        json_response=True,
        stateless=True,
    )
    async with manager.run():
        await manager.handle_request(_asgi_scope(request), receive, send)
    finished.set()
    if status is None:
        return _jsonrpc_error(500, -32603, "Internal error: no response")
    if status == 405 and "allow" not in response_headers:
        response_headers["allow"] = "POST"  # RFC 9110: a 405 names what is allowed
    return HttpResponse(status, response_headers, b"".join(chunks))


def _run_in_new_loop(coro_fn: Callable[[], Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_fn())
    # Called from async code (a test, an async framework): its loop is busy, so use a loop of our own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        ctx = contextvars.copy_context()
        return pool.submit(ctx.run, lambda: asyncio.run(coro_fn())).result()


def handle_mcp(request: HttpRequest, tools: MemoryTools, user_id: str | None) -> HttpResponse:
    """Answer one MCP streamable-HTTP request statelessly (JSON responses, no session, no SSE).

    `user_id` is normally `user_id_from_request(request)`; when None, the protocol still works (initialize,
    tools/list) but every tool call answers a `missing_user` tool error saying how to configure the client.
    """
    method = request.method.upper()
    if method not in ("POST", "DELETE"):
        # A stateless server keeps no stream for server-initiated messages: the spec's answer to GET is 405.
        # (The SDK's legacy transport would instead hold an SSE stream open, which Lambda cannot serve.)
        return _jsonrpc_error(
            405, -32000, "Method Not Allowed: this MCP endpoint is stateless, use POST", {"allow": "POST"}
        )
    try:
        return _run_in_new_loop(lambda: _serve(request, tools, (user_id or "").strip() or None))
    except Exception:
        logger.exception("MCP request failed")
        return _jsonrpc_error(500, -32603, "Internal error")


# --- API Gateway HTTP API (payload v2) helpers ---------------------------------------------------------


def request_from_apigw_event(event: dict[str, Any]) -> HttpRequest:
    """An HttpRequest from an API Gateway HTTP API v2 event (body base64-decoded, cookies ignored)."""
    http = (event.get("requestContext") or {}).get("http") or {}
    raw_body = event.get("body") or ""
    body = base64.b64decode(raw_body) if event.get("isBase64Encoded") else raw_body.encode("utf-8")
    return HttpRequest(
        method=http.get("method", "POST"),
        path=event.get("rawPath") or http.get("path") or "/mcp",
        headers={k.lower(): v for k, v in (event.get("headers") or {}).items()},
        body=body,
        query=dict(event.get("queryStringParameters") or {}),
    )


def response_to_apigw(response: HttpResponse) -> dict[str, Any]:
    """The API Gateway v2 result for an HttpResponse (bodies here are JSON text or empty)."""
    try:
        return {
            "statusCode": response.status,
            "headers": response.headers,
            "body": response.body.decode("utf-8"),
            "isBase64Encoded": False,
        }
    except UnicodeDecodeError:
        return {
            "statusCode": response.status,
            "headers": response.headers,
            "body": base64.b64encode(response.body).decode("ascii"),
            "isBase64Encoded": True,
        }


# --- stdio: `reverie mcp` ---------------------------------------------------------------------------


class HttpMemoryTools:
    """MemoryTools over the HTTP API, for the stdio server (desktop clients hold only an API key)."""

    def __init__(self, client: Any):
        self.client = client  # a reverie.client.ReverieClient

    def add_memories(self, user_id: str, text: str, infer: bool = True, metadata: dict | None = None) -> dict:
        return self.client.add_memories(user_id, text, infer=infer, metadata=metadata)

    def search_memory(
        self, user_id: str, query: str, limit: int = 10, tiers: list[str] | None = None
    ) -> dict:
        return self.client.search(user_id, query, tiers=tiers, limit=limit)

    def list_memories(
        self, user_id: str, tier: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict:
        return self.client.list_memories(user_id, tier=tier, limit=limit, cursor=cursor)

    def delete_memories(self, user_id: str, memory_ids: list[str]) -> dict:
        from reverie.client import ReverieAPIError

        deleted: list[str] = []
        not_found: list[str] = []
        for memory_id in memory_ids:
            try:
                # DELETE takes no user: check ownership first so a tool bound to one user cannot
                # delete another user's memory by id.
                owner = self.client.get_memory(memory_id).get("user_id")
                if owner is not None and owner != user_id:
                    not_found.append(memory_id)
                    continue
                self.client.delete_memory(memory_id)
                deleted.append(memory_id)
            except ReverieAPIError as exc:
                if exc.status != 404:
                    raise
                not_found.append(memory_id)
        return {"deleted": deleted, "not_found": not_found}

    def ask_memory(self, user_id: str, question: str) -> dict:
        return self.client.ask(user_id, question)

    def deep_memory_query(self, user_id: str, query: str) -> dict:
        return self.client.deep_query(user_id, query)

    def get_context(
        self,
        user_id: str,
        session_id: str | None = None,
        query: str | None = None,
        max_tokens: int | None = None,
    ) -> dict:
        return self.client.context(user_id, session_id=session_id, query=query, max_tokens=max_tokens)


def run_stdio(base_url: str, api_key: str, user_id: str) -> None:
    """`reverie mcp`: serve the memory tools over stdio, forwarding each call to the HTTP API."""
    from reverie.client import ReverieClient

    with ReverieClient(base_url, api_key) as client:
        backend = HttpMemoryTools(client)
        server = build_mcp_server(lambda: (backend, user_id))
        server.run("stdio")
