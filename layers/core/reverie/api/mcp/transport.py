"""The MCP endpoint's transport: one `POST /mcp` (streamable HTTP, JSON responses, no sessions) answered
in-process, as a Lambda function must, by running the SDK's ASGI app on the request and collecting its answer.
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
from typing import Any
from urllib.parse import urlencode

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from reverie.api.mcp.tools import StoreTools, build_mcp_server

logger = logging.getLogger(__name__)

USER_HEADER = "x-reverie-user"
USER_QUERY_PARAM = "user_id"


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


# The backend and user of the request being served. handle_mcp runs each request in its own event loop,
# and the SDK's tasks and worker threads inherit context variables, so concurrent requests never mix.
_BINDING: contextvars.ContextVar[tuple[Any, str | None]] = contextvars.ContextVar(
    "reverie_mcp_binding"
)


def _bound_tools() -> tuple[Any, str | None]:
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


async def _serve(request: HttpRequest, tools: Any, user_id: str | None) -> HttpResponse:
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
    body = b"".join(chunks)
    if status >= 400 and "json" not in response_headers.get("content-type", ""):
        # A few SDK refusals are plain text (a POST without Content-Type): MCP clients read JSON-RPC errors.
        text = body.decode("utf-8", "replace").strip() or "the request was refused"
        kept = {k: v for k, v in response_headers.items() if k not in ("content-type", "content-length")}
        return _jsonrpc_error(status, -32600 if status < 500 else -32603, text, kept)
    return HttpResponse(status, response_headers, body)


def _run_in_new_loop(coro_fn: Callable[[], Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_fn())
    # Called from async code (a test, an async framework): its loop is busy, so use a loop of our own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        ctx = contextvars.copy_context()
        return pool.submit(ctx.run, lambda: asyncio.run(coro_fn())).result()


def handle_mcp(request: HttpRequest, tools: Any, user_id: str | None) -> HttpResponse:
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


def serve_apigw(clients, project_id: str, event: dict[str, Any]) -> HttpResponse:
    """One MCP request from API Gateway: the tools bound to the key's project and the user the client names."""
    request = request_from_apigw_event(event)
    return handle_mcp(request, StoreTools(clients, project_id), user_id_from_request(request))
