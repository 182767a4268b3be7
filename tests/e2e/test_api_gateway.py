"""The local API Gateway: the template's routes, the Lambda authorizer in front, API Gateway's own answers."""

from __future__ import annotations

import threading

import httpx
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def authorizer_calls(stack):
    """Counts the authorizer's invocations while still running its real code."""
    calls = []
    lock = threading.Lock()
    real = stack.functions["AuthorizerFunction"].handler

    def counting(event, context):
        with lock:
            calls.append(event.get("identitySource"))
        return real(event, context)

    with stack.override_handler("AuthorizerFunction", counting):
        yield calls


def test_status_answers_200_with_the_dev_key(api):
    response = api.get("/v1/status")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok" and response.json()["project_id"] == "dev"


def test_request_without_a_key_is_401_and_never_reaches_the_authorizer(stack, authorizer_calls):
    response = httpx.get(f"{stack.base_url}/v1/status")
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert authorizer_calls == []


def test_unknown_key_is_401_from_the_authorizer(stack, authorizer_calls):
    response = httpx.get(f"{stack.base_url}/v1/status", headers={"Authorization": "Bearer rv_not_a_real_key"})
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert authorizer_calls == [["Bearer rv_not_a_real_key"]]


def test_authorizer_answer_is_cached_per_key(stack, authorizer_calls):
    # A key of its own, so no earlier test has warmed the cache for it.
    from reverie.api.auth import issue_key

    key = issue_key(stack.clients.db, stack.project_id, name="cache test").key
    for _ in range(3):
        response = httpx.get(f"{stack.base_url}/v1/status", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
    assert authorizer_calls == [[f"Bearer {key}"]]


def test_authorizer_saying_no_is_403(stack):
    def deny(event, context):
        return {"isAuthorized": False}

    with stack.override_handler("AuthorizerFunction", deny):
        response = httpx.get(f"{stack.base_url}/v1/status", headers={"Authorization": "Bearer rv_denied_once"})
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}


def test_unknown_route_is_404_from_the_gateway(api):
    response = api.get("/v1/no-such-route")
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_route_with_authorizer_none_needs_no_key(stack):
    response = httpx.get(f"{stack.base_url}/v1/openapi.json")
    assert response.status_code == 200
    assert "openapi" in response.json()


def test_function_that_raises_is_a_gateway_500(stack, api):
    def broken(event, context):
        raise RuntimeError("boom")

    with stack.override_handler("MemoryApiFunction", broken):
        response = api.get("/v1/status")
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_function_sees_a_payload_v2_event_with_the_authorizer_context(stack, api):
    seen = []

    def echo(event, context):
        seen.append((event, context.function_name, context.get_remaining_time_in_millis()))
        return {"statusCode": 201, "headers": {"x-echo": "yes"}, "cookies": ["a=1", "b=2"], "body": "made"}

    with stack.override_handler("MemoryApiFunction", echo):
        response = api.get("/v1/memories/m-42/history?user_id=ana&tier=semantic&tier=episodic",
                           headers={"Cookie": "c=3; d=4", "X-Custom": "v"})
    assert response.status_code == 201
    assert response.text == "made"
    assert response.headers["x-echo"] == "yes"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    event, function_name, remaining_ms = seen[0]
    assert function_name == "MemoryApiFunction"
    assert 0 < remaining_ms <= 30_000  # the function's Timeout in template.yaml
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /v1/memories/{memory_id}/history"
    assert event["rawPath"] == "/v1/memories/m-42/history"
    assert event["rawQueryString"] == "user_id=ana&tier=semantic&tier=episodic"
    assert event["queryStringParameters"] == {"user_id": "ana", "tier": "semantic,episodic"}
    assert event["pathParameters"] == {"memory_id": "m-42"}
    assert event["cookies"] == ["c=3", "d=4"]
    assert event["headers"]["x-custom"] == "v"
    assert "cookie" not in event["headers"]
    assert event["requestContext"]["http"]["method"] == "GET"
    assert event["requestContext"]["authorizer"] == {"lambda": {"project_id": stack.project_id}}
    assert event["isBase64Encoded"] is False


def test_answer_without_status_code_is_200_json(stack, api):
    with stack.override_handler("MemoryApiFunction", lambda event, context: {"plain": True}):
        response = api.get("/v1/status")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"plain": True}
