"""The API Gateway (HTTP API v2) resolver every HTTP function uses, and every HTTP error mapping in one place:
whatever fails, the chat function and the memory API answer `{"error": {"code", "message"}}` with the same
status for the same failure. Also the scope (the project the authorizer resolved), the body guards (size, JSON
only) and the project's rate limits (reverie.api.limits), applied to every route of both functions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import BaseModel

from reverie.api import limits
from reverie.domain.errors import PayloadTooLarge, ReverieError, Unauthorized, UnsupportedMediaType, ValidationFailed
from reverie.platform.clients import clients
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


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(status_code=status, content_type=JSON, body=json.dumps({"error": error}), headers=headers)


def read_json(body: str) -> Any:
    """The body as JSON. A document Python will not read (an integer of more than 4,300 digits; nesting deeper
    than the interpreter's stack, answered by the resolver's RecursionError handler) is invalid input, not a crash;
    malformed JSON is the framework's 400."""
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise
    except ValueError:  # json.loads raises a plain ValueError for an integer past sys.get_int_max_str_digits()
        raise ValidationFailed("the request body holds a number too long to read") from None


class Resolver(APIGatewayHttpResolver):
    """The framework's resolver, refusing a body that is not JSON before anything reads it: the framework would
    parse form and multipart bodies into the request models, and those are not part of this API.

    It also keeps the request it serves on itself. Powertools keeps it on its base class (BaseRouter), one per
    process, where two resolvers serving at once (the local runner's function instances) read each other's."""

    def resolve(self, event, context) -> dict[str, Any]:
        self._event, self._context = self._to_proxy_event(event), context
        return not_json(event) or super().resolve(event, context)

    @property
    def current_event(self) -> APIGatewayProxyEventV2:
        return self._event

    @current_event.setter
    def current_event(self, event: APIGatewayProxyEventV2) -> None:
        self._event = event

    @property
    def lambda_context(self) -> Any:
        return self._context

    @lambda_context.setter
    def lambda_context(self, context: Any) -> None:
        self._context = context


def make_resolver() -> APIGatewayHttpResolver:
    app = Resolver(enable_validation=True, json_body_deserializer=read_json)

    @app.exception_handler(ReverieError)
    def _domain_error(exc: ReverieError) -> Response:
        if exc.status >= 500:
            logger.error("request failed", extra={"code": exc.code, "error": exc.message})
        return error_response(exc.status, exc.code, exc.message, exc.details, headers=exc.headers())

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
        return _domain_error(UnsupportedMediaType(NOT_JSON_MESSAGE))

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

    def _rate_limited(app, next_middleware):
        # After validation: a request that is refused as invalid spends nothing, and infer=true is known.
        project = _authorized_project(app)
        if project is not None:
            route = app.context.get("_route")
            spends = route is not None and limits.spends_model(route.method, route.path,
                                                              app.context.get("_route_args") or {})
            limits.charge(clients(), project, model=spends)
        return next_middleware(app)

    app.use([_no_project_in_query, _rate_limited])
    return app


def _authorized_project(app: APIGatewayHttpResolver) -> str | None:
    authorizer = app.current_event.request_context.authorizer
    context = (authorizer.get_lambda or {}) if authorizer else {}
    project = context.get("project_id")
    return str(project) if project else None


def project_id(app: APIGatewayHttpResolver) -> str:
    """The project the authorizer resolved from the API key. Never taken from the request itself."""
    project = _authorized_project(app)
    if project is None:
        raise Unauthorized("the request was not authorized with an API key")
    return project


def _proxy_answer(error: ReverieError) -> dict[str, Any]:
    """An error as a proxy answer, for the guards that answer before the resolver reads the request."""
    return {"statusCode": error.status, "headers": {"Content-Type": JSON, **error.headers()},
            "body": json.dumps(error.body())}


def oversized_body(event: dict[str, Any], limit: int = MAX_BODY_BYTES) -> dict[str, Any] | None:
    """A 413 proxy answer when the event's body is over `limit` bytes (checked before anything parses it)."""
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8", "surrogatepass"))
    if size <= limit:
        return None
    return _proxy_answer(PayloadTooLarge(f"the request body must be at most {limit} bytes"))


NOT_JSON_MESSAGE = "send the body as application/json"


def not_json(event: dict[str, Any]) -> dict[str, Any] | None:
    """A 415 proxy answer when the event has a body sent as anything but JSON (no Content-Type is read as JSON)."""
    if not event.get("body"):
        return None
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    media_type = str(headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media_type in ("", JSON):
        return None
    return _proxy_answer(UnsupportedMediaType(NOT_JSON_MESSAGE))
