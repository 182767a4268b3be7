"""The API Gateway (HTTP API v2) resolver every HTTP function uses: validation, the error shape, the scope."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from reverie.errors import PayloadTooLarge, ReverieError, Unauthorized
from reverie.observability import logger

JSON = "application/json"


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

    @app.not_found
    def _not_found(exc: Exception) -> Response:
        return error_response(404, "not_found", "no such route")

    return app


def project_id(app: APIGatewayHttpResolver) -> str:
    """The project the authorizer resolved from the API key. Never taken from the request itself."""
    authorizer = app.current_event.request_context.authorizer
    context = (authorizer.get_lambda or {}) if authorizer else {}
    project = context.get("project_id")
    if not project:
        raise Unauthorized("the request was not authorized with an API key")
    return str(project)


# API Gateway takes bodies up to 10 MB; ours are far smaller, so anything bigger is refused before parsing.
MAX_BODY_BYTES = 64 * 1024


def oversized_body(event: dict[str, Any], limit: int = MAX_BODY_BYTES) -> dict[str, Any] | None:
    """A 413 proxy answer when the event's body is over `limit` bytes (checked before anything parses it)."""
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))
    if size <= limit:
        return None
    error = PayloadTooLarge(f"the request body must be at most {limit} bytes")
    return {"statusCode": error.status, "headers": {"Content-Type": JSON}, "body": json.dumps(error.body())}
