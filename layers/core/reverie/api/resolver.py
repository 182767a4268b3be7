"""The API Gateway (HTTP API v2) resolver every HTTP function uses, and every HTTP error mapping in one place:
whatever fails, the chat function and the memory API answer `{"error": {"code", "message"}}` with the same
status for the same failure. Also the scope (the project the authorizer resolved) and the body size guard."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import BaseModel

from reverie.domain.errors import PayloadTooLarge, ReverieError, Unauthorized
from reverie.platform.observability import logger

JSON = "application/json"
# API Gateway takes bodies up to 10 MB; ours are far smaller, so anything bigger is refused before parsing.
MAX_BODY_BYTES = 64 * 1024


@dataclass
class Reply:
    """An answer whose status or headers depend on the outcome (201 vs 202, 304, ETag...)."""

    status: int
    body: BaseModel | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        return Response(self.status, JSON if self.body is not None else None, self.body, headers=self.headers)


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(status_code=status, content_type=JSON, body=json.dumps({"error": error}))


def make_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.exception_handler(ReverieError)
    def _domain_error(exc: ReverieError) -> Response:
        if exc.status >= 500:
            logger.error("request failed", extra={"code": exc.code, "error": exc.message})
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        details = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "body"]
            details.append({"field": ".".join(loc), "message": str(err.get("msg", "")), "type": err.get("type")})
        message = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details[:3]) or "invalid request"
        return error_response(400, "validation_error", message, details)

    @app.exception_handler(RequestUnsupportedContentType)
    def _not_json(exc: Exception) -> Response:
        return error_response(415, "unsupported_media_type", "send the body as application/json")

    @app.exception_handler(ValueError)
    def _unreadable(exc: ValueError) -> Response:
        # The framework reads form bodies too, and a malformed one (multipart without a boundary) raises here.
        content_type = app.current_event.headers.get("content-type") or ""
        if content_type and not content_type.lower().startswith(JSON):
            return _not_json(exc)
        return _crash(exc)

    @app.exception_handler(UnicodeDecodeError)
    def _not_utf8(exc: UnicodeDecodeError) -> Response:
        return error_response(400, "validation_error", "the request body is not UTF-8 JSON")

    @app.exception_handler(RecursionError)
    def _too_deep(exc: RecursionError) -> Response:
        return error_response(400, "validation_error", "the request body is nested too deeply")

    @app.exception_handler(Exception)
    def _crash(exc: Exception) -> Response:
        logger.exception("request failed")
        return error_response(500, "internal_error", "the request failed; it is safe to retry")

    @app.not_found
    def _not_found(exc: Exception) -> Response:
        return error_response(404, "not_found", "no such route")

    def _no_project_in_query(app, next_middleware):
        # The project is the API key's: a query naming one is refused, not silently ignored.
        if {"project", "project_id"} & set(app.current_event.query_string_parameters or {}):
            return error_response(400, "validation_error",
                                  "the project comes from the API key; remove it from the query")
        return next_middleware(app)

    app.use([_no_project_in_query])
    return app


def project_id(app: APIGatewayHttpResolver) -> str:
    """The project the authorizer resolved from the API key. Never taken from the request itself."""
    authorizer = app.current_event.request_context.authorizer
    context = (authorizer.get_lambda or {}) if authorizer else {}
    project = context.get("project_id")
    if not project:
        raise Unauthorized("the request was not authorized with an API key")
    return str(project)


def oversized_body(event: dict[str, Any], limit: int = MAX_BODY_BYTES) -> dict[str, Any] | None:
    """A 413 proxy answer when the event's body is over `limit` bytes (checked before anything parses it)."""
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))
    if size <= limit:
        return None
    error = PayloadTooLarge(f"the request body must be at most {limit} bytes")
    return {"statusCode": error.status, "headers": {"Content-Type": JSON}, "body": json.dumps(error.body())}
