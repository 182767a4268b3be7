"""The local API Gateway's rules, without sockets: route choice, the v2 event, answers, the authorizer gate."""

from __future__ import annotations

import json

import pytest

from reverie_dev.local.api_gateway import (
    ApiGateway,
    AuthorizerConfig,
    Request,
    Route,
    authorizer_from,
    routes_from,
    to_response,
)
from reverie_dev.local.functions import FunctionError
from reverie_dev.local.template import Template

TEMPLATE = Template()


def gateway(answers: dict, *, ttl_s: int = 60, clock=None):
    """A gateway whose functions answer from `answers` (a value, or an exception to raise); records calls."""
    calls: list[tuple[str, dict]] = []

    def invoke(function, event, expected_errors=()):
        calls.append((function, event))
        answer = answers[function]
        if isinstance(answer, Exception):
            raise FunctionError(function, type(answer).__name__, str(answer))
        return answer(event) if callable(answer) else answer

    auth = AuthorizerConfig("Auth", ["authorization"], ttl_s, True)
    routes = [Route("GET", "/v1/memories/{memory_id}", "Api", True), Route("POST", "/v1/memories/search", "Api", True),
              Route("ANY", "/mcp", "Mcp", True), Route("GET", "/v1/openapi.json", "Api", False)]
    gw = ApiGateway(sorted(routes, key=lambda r: r.specificity, reverse=True), invoke, auth,
                    clock=clock or (lambda: 0.0))
    return gw, calls


ALLOW = {"isAuthorized": True, "context": {"project_id": "p1"}}


def test_routes_come_from_the_template_most_specific_first():
    routes = routes_from(TEMPLATE.functions())
    keys = [r.key for r in routes]
    assert keys.index("POST /v1/memories/search") < keys.index("GET /v1/memories/{memory_id}")
    assert "POST /v1/chat" in keys and "ANY /mcp" in keys
    assert next(r for r in routes if r.key == "GET /v1/openapi.json").authorized is False
    assert next(r for r in routes if r.key == "GET /v1/status").authorized is True


def test_authorizer_settings_come_from_the_template():
    auth = authorizer_from(TEMPLATE)
    assert auth == AuthorizerConfig("AuthorizerFunction", ["authorization"], 60, True)


def test_literal_path_wins_over_a_parameter_and_any_matches_every_method():
    gw, _ = gateway({})
    assert gw.match("POST", "/v1/memories/search")[0].path == "/v1/memories/search"
    route, params = gw.match("GET", "/v1/memories/search")  # no GET on the literal: the parameter takes it
    assert (route.path, params) == ("/v1/memories/{memory_id}", {"memory_id": "search"})
    assert gw.match("DELETE", "/mcp")[0].function == "Mcp"
    assert gw.match("GET", "/v1/memories/a/b") is None
    assert gw.match("GET", "/v1/memories/") is None


def test_greedy_parameter_takes_the_rest_of_the_path():
    route = Route("ANY", "/files/{proxy+}", "Files", False)
    assert route.match("GET", "/files/a/b/c") == {"proxy": "a/b/c"}
    assert route.match("GET", "/files") is None


def test_missing_identity_is_401_without_calling_the_authorizer():
    gw, calls = gateway({"Auth": ALLOW, "Api": {"statusCode": 200, "body": "ok"}})
    response = gw.handle(Request("GET", "/v1/memories/m1"))
    assert (response.status, response.json()) == (401, {"message": "Unauthorized"})
    assert calls == []


@pytest.mark.parametrize(("authorizer", "status", "message"), [
    (Exception("Unauthorized"), 401, "Unauthorized"),
    ({"isAuthorized": False}, 403, "Forbidden"),
    (RuntimeError("database down"), 500, "Internal Server Error"),
    ({"allowed": True}, 500, "Internal Server Error"),
])
def test_authorizer_answers_become_gateway_refusals(authorizer, status, message):
    gw, calls = gateway({"Auth": authorizer, "Api": {"statusCode": 200, "body": "ok"}})
    response = gw.handle(Request("GET", "/v1/memories/m1", headers=[("Authorization", "Bearer k")]))
    assert (response.status, response.json()) == (status, {"message": message})
    assert [c[0] for c in calls] == ["Auth"]


def test_authorizer_answer_is_cached_until_reauthorize_every_passes():
    now = [0.0]
    gw, calls = gateway({"Auth": ALLOW, "Api": {"statusCode": 204}}, ttl_s=60, clock=lambda: now[0])
    request = Request("GET", "/v1/memories/m1", headers=[("Authorization", "Bearer k")])
    for moment in (0.0, 30.0, 59.0, 61.0):
        now[0] = moment
        assert gw.handle(request).status == 204
    assert [c[0] for c in calls].count("Auth") == 2
    other = Request("GET", "/v1/memories/m1", headers=[("Authorization", "Bearer other")])
    gw.handle(other)
    assert [c[0] for c in calls].count("Auth") == 3


def test_route_without_authorizer_has_no_authorizer_context():
    gw, calls = gateway({"Api": {"statusCode": 200, "body": "{}"}})
    assert gw.handle(Request("GET", "/v1/openapi.json")).status == 200
    assert "authorizer" not in calls[0][1]["requestContext"]


def test_event_is_payload_format_2():
    gw, calls = gateway({"Auth": ALLOW, "Api": {"statusCode": 200}})
    gw.handle(Request("POST", "/v1/memories/search", raw_query="a=1&a=2&b=",
                      headers=[("Authorization", "Bearer k"), ("Content-Type", "application/json"),
                               ("X-Multi", "1"), ("x-multi", "2"), ("Host", "localhost:3000")],
                      body=b'{"q": "x"}'))
    authorizer_event, event = calls[0][1], calls[1][1]
    assert authorizer_event["type"] == "REQUEST"
    assert authorizer_event["identitySource"] == ["Bearer k"]
    assert authorizer_event["routeArn"].endswith("/$default/POST/v1/memories/search")
    assert event["routeKey"] == "POST /v1/memories/search"
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["headers"]["x-multi"] == "1,2"
    assert event["headers"]["x-forwarded-port"] == "3000"
    assert event["body"] == '{"q": "x"}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["authorizer"] == {"lambda": {"project_id": "p1"}}
    assert event["requestContext"]["stage"] == "$default"
    assert "pathParameters" not in event


def test_binary_body_is_base64_encoded():
    gw, calls = gateway({"Auth": ALLOW, "Api": {"statusCode": 200}})
    gw.handle(Request("POST", "/v1/memories/search", headers=[("Authorization", "Bearer k"),
                                                               ("Content-Type", "application/octet-stream")],
                      body=b"\xff\x00"))
    assert calls[1][1]["isBase64Encoded"] is True
    assert calls[1][1]["body"] == "/wA="


def test_function_error_is_a_gateway_500():
    gw, _ = gateway({"Auth": ALLOW, "Api": RuntimeError("boom")})
    response = gw.handle(Request("GET", "/v1/memories/m1", headers=[("Authorization", "Bearer k")]))
    assert (response.status, response.json()) == (500, {"message": "Internal Server Error"})


def test_unknown_route_is_404_before_any_authorizer():
    gw, calls = gateway({})
    response = gw.handle(Request("GET", "/nope", headers=[("Authorization", "Bearer k")]))
    assert (response.status, response.json()) == (404, {"message": "Not Found"})
    assert calls == []


def test_answer_with_status_code_sets_status_headers_cookies_and_body():
    response = to_response({"statusCode": 201, "headers": {"content-type": "text/plain"}, "cookies": ["a=1"],
                            "body": "aGk=", "isBase64Encoded": True})
    assert response.status == 201
    assert ("set-cookie", "a=1") in response.headers
    assert response.body == b"hi"


@pytest.mark.parametrize("answer", [{"ok": 1}, [1, 2], "plain"])
def test_answer_without_status_code_is_200_with_the_answer_as_body(answer):
    response = to_response(answer)
    assert response.status == 200
    assert response.body.decode() == (answer if isinstance(answer, str) else json.dumps(answer))


@pytest.mark.parametrize("status", ["200", 99, True, None])
def test_malformed_status_code_is_refused(status):
    with pytest.raises(ValueError):
        to_response({"statusCode": status})
