"""Lambda's Invoke API on the local API server, without sockets: what boto3's lambda.invoke sends and reads."""

from __future__ import annotations

import json

from reverie_dev.local.api_gateway import ApiGateway, Request, Route
from reverie_dev.local.functions import FunctionError
from reverie_dev.local.lambda_api import LambdaInvokeApi, function_name

PATH = "/2015-03-31/functions/{}/invocations"


def gateway(answer):
    """A gateway with one route and one function, Fn, answering `answer` (or raising it); records invocations."""
    calls: list[tuple[str, object]] = []

    def invoke(function, event, expected_errors=()):
        calls.append((function, event))
        if isinstance(answer, Exception):
            raise FunctionError(function, type(answer).__name__, str(answer))
        return answer

    gw = ApiGateway([Route("GET", "/v1/status", "Fn", False)], invoke, None, clock=lambda: 0.0,
                    lambda_api=LambdaInvokeApi(invoke, ["Fn"]))
    return gw, calls


def post(gw, name: str, body: bytes = b"{}", headers: list[tuple[str, str]] | None = None):
    return gw.handle(Request("POST", PATH.format(name), headers=headers or [], body=body))


def header(response, name: str) -> str | None:
    return next((v for k, v in response.headers if k.lower() == name.lower()), None)


def test_an_invocation_answers_the_functions_result():
    gw, calls = gateway({"projects": []})
    response = post(gw, "Fn", b'{"action": "project.list"}')
    assert response.status == 200 and response.json() == {"projects": []}
    assert calls == [("Fn", {"action": "project.list"})]
    assert header(response, "X-Amz-Function-Error") is None
    assert header(response, "X-Amz-Executed-Version") == "$LATEST"


def test_a_function_error_is_200_with_the_lambda_error_body():
    gw, _ = gateway(KeyError("boom"))
    response = post(gw, "Fn")
    assert response.status == 200
    assert header(response, "X-Amz-Function-Error") == "Unhandled"
    assert response.json() == {"errorMessage": "'boom'", "errorType": "KeyError"}


def test_an_unknown_function_is_resource_not_found():
    gw, calls = gateway({})
    response = post(gw, "Nope")
    assert response.status == 404 and header(response, "x-amzn-ErrorType") == "ResourceNotFoundException"
    assert "Function not found" in response.json()["message"] and calls == []


def test_a_body_that_is_not_json_is_refused_before_the_function():
    gw, calls = gateway({})
    response = post(gw, "Fn", b"{not json")
    assert response.status == 400 and header(response, "x-amzn-ErrorType") == "InvalidRequestContentException"
    assert calls == []


def test_event_and_dry_run_invocation_types():
    gw, calls = gateway({"ok": True})
    assert post(gw, "Fn", headers=[("X-Amz-Invocation-Type", "DryRun")]).status == 204
    assert calls == []
    assert post(gw, "Fn", headers=[("X-Amz-Invocation-Type", "Event")]).status == 202
    assert post(gw, "Fn", headers=[("X-Amz-Invocation-Type", "Later")]).status == 400


def test_an_empty_payload_is_an_empty_event():
    gw, calls = gateway({})
    assert post(gw, "Fn", b"").status == 200
    assert calls == [("Fn", {})]


def test_other_paths_and_methods_still_go_to_the_routes():
    gw, calls = gateway({"statusCode": 200, "body": json.dumps({"status": "ok"})})
    assert gw.handle(Request("GET", "/v1/status")).json() == {"status": "ok"}
    assert gw.handle(Request("GET", PATH.format("Fn"))).status == 404  # Invoke is a POST
    assert calls == [("Fn", calls[0][1])]


def test_a_function_is_named_by_its_logical_id_alone_or_in_an_arn():
    assert function_name("AdminFunction") == "AdminFunction"
    assert function_name("AdminFunction:$LATEST") == "AdminFunction"
    assert function_name("arn:aws:lambda:us-east-1:123456789012:function:AdminFunction") == "AdminFunction"
    assert function_name("123456789012:function:AdminFunction:1") == "AdminFunction"
