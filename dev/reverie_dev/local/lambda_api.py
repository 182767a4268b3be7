"""Lambda's Invoke API on the local API server: `POST /2015-03-31/functions/{FunctionName}/invocations`, the REST
call boto3's `lambda.invoke` makes. The same client code then invokes a function here (endpoint_url = the local
API) and in AWS; the `reverie` command reaches the admin function this way. Local only: API Gateway has no such
path, and nothing here checks who calls (the server listens on this machine only).

FunctionName is the template's logical id (AdminFunction), alone or at the end of an ARN. As Lambda answers:
a function's result with 200; a function error with 200, `X-Amz-Function-Error: Unhandled` and
{"errorMessage", "errorType"}; an unknown function with 404 ResourceNotFoundException.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from reverie_dev.local.api_gateway import ACCOUNT_ID, REGION, Request, Response
from reverie_dev.local.functions import FunctionError

log = logging.getLogger("reverie.local")

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$")
# Lambda refuses a synchronous request payload over 6 MB.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


class LambdaInvokeApi:
    def __init__(self, invoke: Callable[..., Any], functions: Iterable[str]):
        self.invoke = invoke
        self.functions = set(functions)

    def handle(self, request: Request, request_id: str) -> Response | None:
        """The answer to an Invoke request, or None when the request is not one (it goes to API Gateway)."""
        found = INVOKE_PATH.match(request.raw_path)
        if found is None or request.method != "POST":
            return None
        name = function_name(found["name"])
        if name not in self.functions:
            return _error(404, "ResourceNotFoundException",
                          f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name} "
                          f"(locally, a function is named by its logical id: {', '.join(sorted(self.functions))})",
                          request_id)
        if len(request.body) > MAX_PAYLOAD_BYTES:
            return _error(413, "RequestTooLargeException",
                          f"Request must be smaller than {MAX_PAYLOAD_BYTES} bytes for the InvokeFunction operation",
                          request_id)
        try:
            event = json.loads(request.body) if request.body.strip() else {}
        except ValueError as exc:
            return _error(400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}",
                          request_id)
        kind = dict((k.lower(), v) for k, v in request.headers).get("x-amz-invocation-type", "RequestResponse")
        if kind == "DryRun":
            return _answer(204, b"", request_id, name)
        if kind == "Event":
            threading.Thread(target=self._invoke_quietly, args=(name, event), name=f"invoke-{name}",
                             daemon=True).start()
            return _answer(202, b"", request_id, name)
        if kind != "RequestResponse":
            return _error(400, "InvalidParameterValueException",
                          f"InvocationType {kind!r} is not one of RequestResponse, Event, DryRun", request_id)
        try:
            result = self.invoke(name, event)
        except FunctionError as err:
            body = json.dumps({"errorMessage": err.message, "errorType": err.error_type}).encode()
            response = _answer(200, body, request_id, name)
            response.headers.append(("X-Amz-Function-Error", "Unhandled"))
            return response
        return _answer(200, json.dumps(result).encode(), request_id, name)

    def _invoke_quietly(self, name: str, event: Any) -> None:
        # A failure is logged by the function; an asynchronous caller gets nothing back, as in Lambda.
        with contextlib.suppress(FunctionError):
            self.invoke(name, event)


def function_name(given: str) -> str:
    """The function part of a name, a partial ARN (123456789012:function:Name) or an ARN, without a qualifier."""
    if ":function:" in given:
        given = given.split(":function:", 1)[1]
    return given.split(":", 1)[0]


def _answer(status: int, body: bytes, request_id: str, function: str) -> Response:
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id),
               ("X-Amz-Executed-Version", "$LATEST")]
    return Response(status, headers, body, function=function)


def _error(status: int, error_type: str, message: str, request_id: str) -> Response:
    # A service error as boto3 reads it (rest-json): its code in x-amzn-ErrorType, its message in the body.
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id),
               ("x-amzn-ErrorType", error_type)]
    return Response(status, headers, json.dumps({"Type": "User", "message": message}).encode(), function="lambda")
