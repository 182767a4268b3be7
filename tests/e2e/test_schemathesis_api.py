"""Property-based testing of the whole served OpenAPI document through the local stack: every operation of the
public API (the memory API's, POST /v1/chat of the chat function and the MCP endpoint's JSON-RPC requests, one
shape per tool). Whatever the input: no 5xx, every status and body as documented, and every 4xx in the error
shape (MCP's own refusals as JSON-RPC errors, as MCP clients expect them)."""

from __future__ import annotations

import importlib.util
import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
)

from reverie.api import openapi
from tests.support.functions import functions

pytestmark = pytest.mark.e2e

# Per operation, on top of the coverage phase's boundary cases: enough to reach every operation with valid and
# invalid input, few enough to stay well under a minute. REVERIE_SCHEMATHESIS_EXAMPLES=200 for a deeper run.
MAX_EXAMPLES = int(os.environ.get("REVERIE_SCHEMATHESIS_EXAMPLES", "8"))


# The document the memory API function serves (the test below checks the served one is this one), built
# at collection so every operation becomes its own test.
def _memory_api_app():
    spec = functions()["MemoryApiFunction"]
    module_spec = importlib.util.spec_from_file_location("memory_api_app", spec.app_path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.app


DOCUMENT = openapi.document(_memory_api_app())
schema = schemathesis.openapi.from_dict(DOCUMENT)
# NUL is refused in every string by design (Postgres cannot store it) and the free-form metadata objects cannot
# say so in JSON Schema: leave it out of generated data rather than call a documented 400 a rejection.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES,
                                deterministic=True, allow_x00=False)
EXCLUDED = [
    # API Gateway answers a method a path does not have with 404 {"message": "Not Found"}, not 405.
    unsupported_method,
    # JSON input is read in pydantic's lax mode (0 is false, a number is a timestamp): accepted on purpose.
    negative_data_rejection,
]
# The methods the local API server speaks; it answers TRACE and QUERY itself with 501, where API Gateway would not.
schema.config.phases.coverage.unexpected_methods = {"get", "put", "post", "delete", "options", "patch"}


def error_shape(ctx, response, case) -> bool | None:
    """Every 4xx of the API is {"error": {"code", "message"}} (API Gateway's own refusals are {"message"}; the MCP
    server's are JSON-RPC errors, {"jsonrpc", "id", "error": {"code": <int>, "message"}})."""
    if not 400 <= response.status_code < 500:
        return None
    assert "json" in (response.headers.get("content-type") or [""])[0], response.text[:200]
    body = response.json()
    if set(body) == {"message"}:
        assert response.status_code in (401, 403, 404, 413), f"API Gateway answer with {response.status_code}"
        return True
    if case.path == "/mcp" and "jsonrpc" in body:
        assert body["jsonrpc"] == "2.0" and isinstance(body["error"]["code"], int), body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
        return True
    assert set(body) == {"error"}, body
    assert isinstance(body["error"].get("code"), str) and body["error"]["code"], body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"], body
    return True


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_input_gets_a_server_error_and_every_answer_is_documented(case, stack):
    excluded = list(EXCLUDED)
    if (case.query or {}).get("cursor") is not None:
        # A cursor is opaque: one this API did not hand out is a 400 even when it fits the documented pattern.
        excluded.append(positive_data_acceptance)
    if (case.headers or {}).get("idempotency-key") is not None:
        # A key names one request: generated cases reuse keys with other bodies, which is a documented 422.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(base_url=stack.base_url, headers={"Authorization": f"Bearer {stack.api_key}"},
                           additional_checks=[error_shape], excluded_checks=excluded)


def test_the_served_document_is_the_one_tested_and_needs_no_key(stack):
    response = httpx.get(f"{stack.base_url}/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc == DOCUMENT
    assert doc["openapi"].startswith("3.1") and doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
