"""The MCP adapter without sockets: raw JSON-RPC through handle_mcp, tool error mapping, request helpers."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import anyio
import pytest
from mcp.client import Client

from reverie.api.mcp.tools import DeleteMemories, build_mcp_server
from reverie.api.mcp.transport import (
    HttpRequest,
    HttpResponse,
    handle_mcp,
    request_from_apigw_event,
    response_to_apigw,
    user_id_from_request,
)
from reverie_dev.mcp_stdio import HttpTools

HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Backend:
    """Answers every tool with what it was called with; raises what `raise_` holds."""

    raise_: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        def call(user_id: str, args: Any) -> dict:
            if self.raise_ is not None:
                raise self.raise_
            return {"tool": name, "user_id": user_id, **args.model_dump()}

        return call


def _post(body: Any, headers: dict[str, str] | None = None, user: str | None = "alice") -> HttpResponse:
    request = HttpRequest("POST", "/mcp", {**HEADERS, **(headers or {})}, json.dumps(body).encode(), {})
    return handle_mcp(request, Backend(), user)


def _call_tool(backend: Any, name: str, arguments: dict[str, Any], user: str | None = "alice") -> Any:
    server = build_mcp_server(lambda: (backend, user))

    async def main() -> Any:
        async with Client(server) as client:  # the SDK's own in-process client
            return await client.call_tool(name, arguments)

    return anyio.run(main)


def test_user_comes_from_the_header_else_the_query() -> None:
    def req(headers: dict[str, str], query: dict[str, str]) -> HttpRequest:
        return HttpRequest("POST", "/mcp", headers, b"", query)

    assert user_id_from_request(req({"X-Reverie-User": " bob "}, {"user_id": "alice"})) == "bob"
    assert user_id_from_request(req({"x-reverie-user": "bob"}, {})) == "bob"
    assert user_id_from_request(req({}, {"user_id": "alice"})) == "alice"
    assert user_id_from_request(req({"x-reverie-user": "  "}, {"user_id": ""})) is None
    assert user_id_from_request(req({}, {})) is None


def test_initialize_answers_json_with_no_session_id() -> None:
    response = _post(INITIALIZE)
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "mcp-session-id" not in response.headers
    result = json.loads(response.body)["result"]
    assert result["protocolVersion"] == "2025-06-18"
    assert result["serverInfo"]["name"] == "reverie"


def test_a_tool_call_needs_no_prior_initialize() -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "ask_memory", "arguments": {"question": "diet?"}},
    }
    response = _post(call, {"mcp-protocol-version": "2025-06-18"}, user="carol")
    result = json.loads(response.body)["result"]
    assert result["isError"] is False
    assert result["structuredContent"] == {"tool": "ask_memory", "user_id": "carol", "question": "diet?"}


def test_a_notification_is_accepted_with_202_and_no_body() -> None:
    response = _post(
        {"jsonrpc": "2.0", "method": "notifications/initialized"}, {"mcp-protocol-version": "2025-06-18"}
    )
    assert response.status == 202


def test_a_client_that_does_not_accept_json_gets_406() -> None:
    assert _post(INITIALIZE, {"accept": "text/event-stream"}).status == 406


def test_unparseable_body_is_a_jsonrpc_parse_error_not_a_crash() -> None:
    request = HttpRequest("POST", "/mcp", HEADERS, b"{not json", {})
    response = handle_mcp(request, Backend(), "alice")
    assert response.status == 400
    assert json.loads(response.body)["error"]["code"] == -32700


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH"])
def test_methods_other_than_post_are_405(method: str) -> None:
    response = handle_mcp(HttpRequest(method, "/mcp", HEADERS, b"", {}), Backend(), "alice")
    assert response.status == 405
    assert response.headers["allow"] == "POST"


def test_handle_mcp_works_when_called_from_a_running_event_loop() -> None:
    async def main() -> HttpResponse:
        return handle_mcp(
            HttpRequest("POST", "/mcp", HEADERS, json.dumps(INITIALIZE).encode(), {}), Backend(), "a"
        )

    assert asyncio.run(main()).status == 200


def test_api_error_becomes_a_tool_error_with_its_code_and_message() -> None:
    backend = Backend()
    backend.raise_ = ApiError(404, "not_found", "memory 123 does not exist")
    result = _call_tool(backend, "delete_memories", {"memory_ids": ["123"]})
    assert result.is_error
    assert json.loads(result.content[0].text) == {
        "error": {"code": "not_found", "message": "memory 123 does not exist"}
    }
    assert result.structured_content == {
        "error": {"code": "not_found", "message": "memory 123 does not exist"}
    }


def test_other_exceptions_become_internal_error_without_their_text() -> None:
    backend = Backend()
    backend.raise_ = KeyError("secret-table-name")
    result = _call_tool(backend, "search_memory", {"query": "x"})
    assert result.is_error
    error = json.loads(result.content[0].text)["error"]
    assert error["code"] == "internal_error"
    assert "secret" not in result.content[0].text and "KeyError" not in result.content[0].text


def test_missing_user_is_a_tool_error_before_the_backend_is_called() -> None:
    backend = Backend()
    backend.raise_ = AssertionError("the backend must not be called")
    result = _call_tool(backend, "list_memories", {}, user=None)
    assert result.is_error
    assert json.loads(result.content[0].text)["error"]["code"] == "missing_user"


def test_tool_arguments_reach_the_backend_with_defaults() -> None:
    result = _call_tool(Backend(), "search_memory", {"query": "tea", "tiers": ["semantic"]})
    assert result.structured_content == {
        "tool": "search_memory",
        "user_id": "alice",
        "query": "tea",
        "limit": 10,
        "tiers": ["semantic"],
    }
    result = _call_tool(Backend(), "get_context", {"query": "hi"})
    assert result.structured_content == {
        "tool": "get_context",
        "user_id": "alice",
        "session_id": None,
        "query": "hi",
        "max_tokens": None,
    }


def test_arguments_outside_the_schema_are_refused_by_the_sdk() -> None:
    result = _call_tool(Backend(), "search_memory", {"query": "tea", "tiers": ["dreams"]})
    assert result.is_error


def test_apigw_v2_event_and_result_round_trip() -> None:
    body = json.dumps(INITIALIZE).encode()
    event = {
        "version": "2.0",
        "rawPath": "/mcp",
        "rawQueryString": "user_id=alice",
        "headers": {**HEADERS, "Host": "api.example.com"},
        "queryStringParameters": {"user_id": "alice"},
        "requestContext": {"http": {"method": "POST", "path": "/mcp"}},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
    request = request_from_apigw_event(event)
    assert (request.method, request.path, request.body) == ("POST", "/mcp", body)
    assert request.headers["host"] == "api.example.com"
    assert user_id_from_request(request) == "alice"
    result = response_to_apigw(handle_mcp(request, Backend(), user_id_from_request(request)))
    assert result["statusCode"] == 200 and result["isBase64Encoded"] is False
    assert json.loads(result["body"])["result"]["serverInfo"]["name"] == "reverie"


class FakeClient:
    def __init__(self) -> None:
        self.memories = {"m1": {"id": "m1", "user_id": "alice"}, "m2": {"id": "m2", "user_id": "bob"}}
        self.deleted: list[str] = []

    def get_memory(self, memory_id: str) -> dict:
        from reverie_client import ReverieAPIError

        if memory_id not in self.memories:
            raise ReverieAPIError(404, "not_found", "no such memory")
        return self.memories[memory_id]

    def delete_memory(self, memory_id: str) -> None:
        self.deleted.append(memory_id)


def test_http_backend_deletes_only_the_users_own_memories() -> None:
    client = FakeClient()
    result = HttpTools(client).delete_memories("alice", DeleteMemories(memory_ids=["m1", "m2", "m3"]))
    assert result == {"deleted": ["m1"], "not_found": ["m2", "m3"]}
    assert client.deleted == ["m1"]
