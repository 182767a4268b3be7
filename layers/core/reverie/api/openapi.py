"""The public API's OpenAPI document: the memory API's routes and the chat function's (reverie.api.chat),
generated from their resolvers, and the MCP endpoint (JSON-RPC over POST /mcp, one request shape per tool), with
the bearer scheme declared and the error answers (`{"error": {"code", "message"}}`) documented on every
operation, rate limits (429 with Retry-After) included."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from reverie.api.chat import add_chat_route
from reverie.api.mcp.tools import TOOLS
from reverie.api.resolver import make_resolver
from reverie.api.schemas import ErrorBody
from reverie.domain.fields import SAFE_ID_PATTERN

TITLE = "Reverie memory API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Long-term memory for AI chat assistants. Every request carries `Authorization: Bearer <api key>`; the key "
    "names the project, which is never taken from a body or a query. Errors are "
    '`{"error": {"code": "...", "message": "..."}}`.'
)
SCHEME = "bearer"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_GATEWAY_REF = {"$ref": "#/components/schemas/GatewayError"}
# API Gateway answers some refusals itself, before the function runs, in its own shape: {"message": "..."}.
_GATEWAY_ERROR = {
    "type": "object", "title": "GatewayError", "required": ["message"],
    "properties": {"message": {"type": "string", "title": "Message"}},
    "description": "An answer of API Gateway itself (e.g. no or unknown API key: 401 Unauthorized).",
}
_ERRORS = {
    "400": ("Invalid input (`validation_error`): nothing was stored.", _ERROR_REF),
    "401": ("Missing or unknown API key: API Gateway's `Unauthorized`, or `unauthorized`.",
            {"anyOf": [_GATEWAY_REF, _ERROR_REF]}),
    "429": ("The project's rate limit for this minute is spent (`rate_limited`): retry after Retry-After seconds.",
            _ERROR_REF),
    "503": ("An engine or the model is unavailable (`unavailable`); retrying later is safe.", _ERROR_REF),
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds until the project's budget for the minute starts again.",
                                "schema": {"type": "integer", "minimum": 1}}}
_TOO_LARGE = ("The body is too large (`payload_too_large`, or API Gateway's own answer past its limit).",
              {"anyOf": [_ERROR_REF, _GATEWAY_REF]})
_NOT_JSON = ("The body is not sent as `application/json` (`unsupported_media_type`).", _ERROR_REF)
_NOT_FOUND = "No such resource in this project (`not_found`)."
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@lru_cache(maxsize=4)
def document(app) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app` (an APIGatewayHttpResolver with validation enabled), made once."""
    raw = app.get_openapi_json_schema(
        title=TITLE, version=VERSION, description=DESCRIPTION,
        security_schemes={SCHEME: HTTPBearer(description="An API key of the project: `Bearer <key>`.")},
        security=[{SCHEME: []}],
    )
    doc = json.loads(raw)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    chat = json.loads(add_chat_route(make_resolver()).get_openapi_json_schema(title=TITLE, version=VERSION))
    doc["paths"].update(chat.get("paths", {}))
    for name, schema in chat.get("components", {}).get("schemas", {}).items():
        schemas.setdefault(name, schema)
    doc["paths"]["/mcp"] = {"post": _mcp_operation()}
    schemas.update(_MCP_SCHEMAS)
    schemas.update(_tool_models())
    for name, schema in ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").pop(
        "$defs", {}
    ).items():
        schemas[name] = schema
    schemas["ErrorBody"] = {
        k: v for k, v in ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").items()
        if k != "$defs"
    }
    schemas["GatewayError"] = _GATEWAY_ERROR
    for path, item in doc.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            # Validation failures are answered 400 with the error shape, not the framework's default 422.
            if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                responses.pop("422")
            for status in ("204", "304"):  # answered with no body
                if status in responses:
                    responses[status].pop("content", None)
            errors = dict(_ERRORS)
            if "{" in path:
                errors["404"] = (_NOT_FOUND, _ERROR_REF)
            if "requestBody" in operation:
                errors["413"] = _TOO_LARGE
                errors["415"] = _NOT_JSON
            for status, (description, schema) in errors.items():
                responses.setdefault(status, {"description": description,
                                              "content": {"application/json": {"schema": schema}}})
            responses["429"].setdefault("headers", _RETRY_AFTER)
    # The framework's own validation error shapes are never answered: drop them once nothing refers to them.
    for unused in ("HTTPValidationError", "ResponseValidationError", "ValidationError"):
        if f'"#/components/schemas/{unused}"' not in json.dumps(doc):
            schemas.pop(unused, None)
    return doc


# ---------------------------------------------------------------- MCP (streamable HTTP, stateless, JSON answers)

_RPC_ID = {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "The request's id, echoed back."}
_RPC_ERROR_REF = {"$ref": "#/components/schemas/JsonRpcError"}
_COMPONENT_REF = "#/components/schemas/{model}"
_MCP_SCHEMAS: dict[str, Any] = {
    "JsonRpcResponse": {
        "type": "object", "title": "JsonRpcResponse", "required": ["jsonrpc"],
        "description": "A JSON-RPC 2.0 answer: `result` (a tool's outcome is in it, `isError` for a tool error such "
                       "as `rate_limited`), or `error`.",
        "properties": {"jsonrpc": {"const": "2.0"}, "id": {"anyOf": [*_RPC_ID["anyOf"], {"type": "null"}]},
                       "result": {"type": "object"}, "error": {"type": "object"}},
    },
    "JsonRpcError": {
        "type": "object", "title": "JsonRpcError", "required": ["jsonrpc", "error"],
        "description": "A request the MCP server refused, as JSON-RPC says it: an error code and message.",
        "properties": {"jsonrpc": {"const": "2.0"}, "id": {"anyOf": [*_RPC_ID["anyOf"], {"type": "null"}]},
                       "error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}}},
    },
}


def _tool_arguments(tool) -> dict[str, Any]:
    """A tool's arguments as JSON Schema, the models nested in them referred to in the components (_tool_models)."""
    schema = tool.args.model_json_schema(ref_template=_COMPONENT_REF)
    schema.pop("$defs", None)
    return schema


def _tool_models() -> dict[str, Any]:
    """The models nested in the tools' arguments (add_turn's messages), as components."""
    found: dict[str, Any] = {}
    for tool in TOOLS:
        found.update(tool.args.model_json_schema(ref_template=_COMPONENT_REF).get("$defs", {}))
    return found


def _rpc(method: str, params: dict[str, Any] | None, title: str) -> dict[str, Any]:
    properties: dict[str, Any] = {"jsonrpc": {"const": "2.0"}, "id": _RPC_ID, "method": {"const": method}}
    if params is not None:
        properties["params"] = params
    return {"type": "object", "title": title, "required": ["jsonrpc", "id", "method", *(["params"] if params else [])],
            "properties": properties}


def _mcp_operation() -> dict[str, Any]:
    """POST /mcp: the JSON-RPC requests an MCP client sends (initialize, tools/list, and tools/call of each tool
    with its arguments' schema). The project is the API key's; the user is the X-Reverie-User header's."""
    initialize = {"type": "object", "required": ["protocolVersion", "capabilities", "clientInfo"], "properties": {
        "protocolVersion": {"type": "string"}, "capabilities": {"type": "object"},
        "clientInfo": {"type": "object", "required": ["name", "version"],
                       "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}}}
    calls = [_rpc("tools/call", {"type": "object", "required": ["name", "arguments"], "properties": {
        "name": {"const": tool.name}, "arguments": _tool_arguments(tool)}}, f"tools/call {tool.name}")
        for tool in TOOLS]
    requests = [_rpc("initialize", initialize, "initialize"), _rpc("tools/list", None, "tools/list"), *calls]
    rpc_error = ("Refused by the MCP server, as a JSON-RPC error (or `validation_error` for a query naming a "
                 "project).", {"anyOf": [_RPC_ERROR_REF, _ERROR_REF]})
    errors = {**_ERRORS, "400": rpc_error, "406": ("The client does not accept application/json.", _RPC_ERROR_REF),
              "413": _TOO_LARGE, "415": ("The body is not JSON.", {"anyOf": [_RPC_ERROR_REF, _ERROR_REF]})}
    responses: dict[str, Any] = {
        "200": {"description": "The JSON-RPC answer.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JsonRpcResponse"}}}},
        "202": {"description": "A notification or response was accepted (no body)."},
    }
    for status, (description, schema) in errors.items():
        responses[status] = {"description": description, "content": {"application/json": {"schema": schema}}}
    responses["429"]["headers"] = _RETRY_AFTER
    return {
        "summary": "MCP (streamable HTTP): the memory tools for an assistant",
        "description": "Stateless JSON-RPC over POST, answered as JSON. Tools: "
                       + ", ".join(tool.name for tool in TOOLS) + ". The tools that spend model calls count in "
                       "the project's model rate limit and answer a `rate_limited` tool error past it.",
        "operationId": "mcp_post",
        "parameters": [{"name": "X-Reverie-User", "in": "header", "required": False,
                        "description": "The user the tools act for (without it, a tool answers `missing_user`).",
                        "schema": {"type": "string", "pattern": SAFE_ID_PATTERN}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": requests}}}},
        "responses": responses,
    }
