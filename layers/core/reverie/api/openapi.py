"""The memory API's OpenAPI document, generated from the resolver's routes, with the bearer scheme declared
and the error answers (`{"error": {"code", "message"}}`) documented on every operation."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from reverie.api.schemas import ErrorBody

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
    "503": ("An engine or the model is unavailable (`unavailable`); retrying later is safe.", _ERROR_REF),
}
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
            responses.pop("422", None)
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
    # The framework's own validation error shapes are never answered: drop them once nothing refers to them.
    for unused in ("HTTPValidationError", "ResponseValidationError", "ValidationError"):
        if f'"#/components/schemas/{unused}"' not in json.dumps(doc):
            schemas.pop(unused, None)
    return doc
