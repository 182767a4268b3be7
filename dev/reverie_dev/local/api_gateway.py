"""API Gateway (HTTP API, payload 2.0) on this machine, as `sam local start-api` without Docker: the template's
routes, its Lambda authorizer (cached for ReauthorizeEvery), and API Gateway's own refusals."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from reverie_dev.local.functions import FunctionError
from reverie_dev.local.template import FunctionSpec, Template

log = logging.getLogger("reverie.local")

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
API_ID = "local"
STAGE = "$default"
# Lambda refuses request payloads over 6 MB; API Gateway answers 413 before that for bodies over 10 MB.
MAX_BODY_BYTES = 6 * 1024 * 1024
_TEXT_TYPES = re.compile(r"^(text/|application/(json|xml|javascript|x-www-form-urlencoded|.*\+json|.*\+xml))")

Invoke = Callable[..., Any]  # invoke(function logical id, event, expected_errors=()) -> answer


@dataclass(frozen=True)
class Route:
    method: str  # GET, POST, ... or ANY
    path: str  # /v1/memories/{memory_id}
    function: str
    authorized: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        want, got = self.path.strip("/").split("/"), path.strip("/").split("/")
        params: dict[str, str] = {}
        for i, part in enumerate(want):
            if part.startswith("{") and part.endswith("+}"):  # greedy {proxy+}: the rest of the path
                rest = got[i:]
                if not rest or rest == [""]:
                    return None
                params[part[1:-2]] = "/".join(rest)
                return params
            if i >= len(got):
                return None
            if part.startswith("{") and part.endswith("}"):
                if not got[i]:
                    return None
                params[part[1:-1]] = got[i]
            elif part != got[i]:
                return None
        return params if len(want) == len(got) else None

    @property
    def specificity(self) -> tuple[int, int, int]:
        parts = self.path.strip("/").split("/")
        greedy = any(p.endswith("+}") for p in parts)
        literal = sum(1 for p in parts if not p.startswith("{"))
        return (0 if greedy else 1, literal, 0 if self.method == "ANY" else 1)


def routes_from(functions: dict[str, FunctionSpec]) -> list[Route]:
    """Most specific first, as API Gateway chooses: literal paths over parameters, a method over ANY."""
    routes = [Route(r.method, r.path, f.logical_id, r.authorized) for f in functions.values() for r in f.routes]
    return sorted(routes, key=lambda r: r.specificity, reverse=True)


@dataclass
class AuthorizerConfig:
    function: str
    identity_headers: list[str] = field(default_factory=lambda: ["authorization"])
    ttl_s: int = 0
    simple_responses: bool = True


def authorizer_from(template: Template) -> AuthorizerConfig | None:
    function = template.authorizer_function()
    if function is None:
        return None
    for res in template.of_type("AWS::Serverless::HttpApi").values():
        auth = res["Properties"].get("Auth") or {}
        default = auth.get("DefaultAuthorizer")
        if not default:
            continue
        spec = auth["Authorizers"][default]
        identity = spec.get("Identity") or {}
        return AuthorizerConfig(
            function=function,
            identity_headers=[h.lower() for h in identity.get("Headers", ["Authorization"])],
            ttl_s=int(identity.get("ReauthorizeEvery", 300)),
            simple_responses=bool(spec.get("EnableSimpleResponses")),
        )
    return None


@dataclass
class Request:
    method: str
    raw_path: str
    raw_query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    function: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


def gateway_error(status: int, message: str) -> Response:
    # API Gateway's own refusals have this shape, not the API's {"error": {...}}.
    return Response(status, [("content-type", "application/json")], json.dumps({"message": message}).encode())


class ApiGateway:
    def __init__(self, routes: list[Route], invoke: Invoke, authorizer: AuthorizerConfig | None,
                 clock: Callable[[], float] = time.monotonic, lambda_api: Any = None):
        self.routes = routes
        self.invoke = invoke
        self.authorizer = authorizer
        # Lambda's Invoke API served beside the routes (reverie_dev.local.lambda_api): local only.
        self.lambda_api = lambda_api
        self._clock = clock
        self._cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        if self.lambda_api is not None:
            invoked = self.lambda_api.handle(request, request_id)
            if invoked is not None:
                return invoked
        response = self._handle(request, request_id)
        response.headers.append(("apigw-requestid", request_id))
        return response

    def _handle(self, request: Request, request_id: str) -> Response:
        found = self.match(request.method, request.raw_path)
        if found is None:
            return gateway_error(404, "Not Found")
        route, params = found
        if len(request.body) > MAX_BODY_BYTES:
            return gateway_error(413, "Request Entity Too Large")
        event = build_event(request, route, params, request_id)
        if route.authorized and self.authorizer is not None:
            refused, context = self._authorize(request, event)
            if refused is not None:
                return refused
            event["requestContext"]["authorizer"] = {"lambda": context}
        try:
            answer = self.invoke(route.function, event)
        except FunctionError:
            return gateway_error(500, "Internal Server Error")
        try:
            response = to_response(answer)
        except (TypeError, ValueError, KeyError) as exc:
            log.error("%s answered a malformed response: %s", route.function, exc, extra={"function": route.function})
            return gateway_error(500, "Internal Server Error")
        response.function = route.function
        return response

    def _authorize(self, request: Request, event: dict[str, Any]) -> tuple[Response | None, dict[str, Any]]:
        auth = self.authorizer
        assert auth is not None
        headers = event["headers"]
        identity = [headers.get(h) for h in auth.identity_headers]
        if any(not value for value in identity):
            # API Gateway refuses a request without its identity source and never calls the authorizer.
            return gateway_error(401, "Unauthorized"), {}
        cache_key = tuple(v or "" for v in identity)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(cache_key)
        if hit and hit[0] > now:
            answer = hit[1]
        else:
            try:
                answer = self.invoke(auth.function, authorizer_event(event, identity),
                                     expected_errors=("Unauthorized",))
            except FunctionError as err:
                if err.message == "Unauthorized":
                    return gateway_error(401, "Unauthorized"), {}
                return gateway_error(500, "Internal Server Error"), {}
            if not isinstance(answer, dict) or not isinstance(answer.get("isAuthorized"), bool):
                log.error("the authorizer answered without isAuthorized", extra={"function": auth.function})
                return gateway_error(500, "Internal Server Error"), {}
            if auth.ttl_s > 0:
                with self._lock:
                    if len(self._cache) > 10_000:
                        self._cache.clear()
                    self._cache[cache_key] = (now + auth.ttl_s, answer)
        if not answer["isAuthorized"]:
            return gateway_error(403, "Forbidden"), {}
        return None, dict(answer.get("context") or {})


# ---------------------------------------------------------------- events and answers
def _join_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers


def build_event(request: Request, route: Route, params: dict[str, str], request_id: str) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends to a Lambda integration."""
    headers = _join_headers(request.headers)
    cookie = headers.pop("cookie", None)
    host = headers.get("host", "localhost")
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-forwarded-for", request.source_ip)
    if ":" in host:
        headers.setdefault("x-forwarded-port", host.rsplit(":", 1)[1])
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookie:
        event["cookies"] = [c.strip() for c in cookie.split(";") if c.strip()]
    event["headers"] = headers
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    if query:
        event["queryStringParameters"] = query
    domain = host.split(":", 1)[0]
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.key,
        "stage": STAGE,
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if params:
        event["pathParameters"] = params
    if request.body:
        content_type = headers.get("content-type", "")
        text = _as_text(request.body) if _TEXT_TYPES.match(content_type) or not content_type else None
        if text is None:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
            event["isBase64Encoded"] = False
    else:
        event["isBase64Encoded"] = False
    return event


def _as_text(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def authorizer_event(event: dict[str, Any], identity: list[str | None]) -> dict[str, Any]:
    """The REQUEST authorizer event (payload 2.0) for the request `event` is about to make."""
    http = event["requestContext"]["http"]
    out: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{API_ID}/{STAGE}/{http['method']}{http['path']}",
        "identitySource": list(identity),
        "routeKey": event["routeKey"],
        "rawPath": event["rawPath"],
        "rawQueryString": event["rawQueryString"],
    }
    for key in ("cookies", "headers", "queryStringParameters"):
        if key in event:
            out[key] = event[key]
    out["requestContext"] = {k: v for k, v in event["requestContext"].items() if k != "authorizer"}
    if "pathParameters" in event:
        out["pathParameters"] = event["pathParameters"]
    return out


def to_response(answer: Any) -> Response:
    """A function's answer as API Gateway turns it into HTTP (payload format 2.0 rules)."""
    if isinstance(answer, dict) and "statusCode" in answer:
        status = answer["statusCode"]
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"statusCode {status!r} is not an HTTP status")
        headers = [(str(k), str(v)) for k, v in (answer.get("headers") or {}).items()]
        headers += [("set-cookie", str(c)) for c in answer.get("cookies") or []]
        body = answer.get("body")
        if body is None:
            raw = b""
        elif answer.get("isBase64Encoded"):
            raw = base64.b64decode(body)
        else:
            raw = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        return Response(status, headers, raw)
    # No statusCode: API Gateway assumes 200 and JSON, and the whole answer is the body.
    raw = (answer if isinstance(answer, str) else json.dumps(answer)).encode("utf-8")
    return Response(200, [("content-type", "application/json")], raw)


# ---------------------------------------------------------------- the HTTP server
class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body leave in two writes; with Nagle's algorithm the second waits for the client's delayed
    # ACK (40 ms on Linux) on a kept-alive connection. API Gateway does not add that wait, so neither may we.
    disable_nagle_algorithm = True
    server_version = "reverie-local"
    gateway: ApiGateway  # set on the subclass made per server

    def _serve(self) -> None:
        started = time.monotonic()
        path, _, raw_query = self.path.partition("?")
        # HTTP APIs hand the function a decoded path (rawPath and path parameters); the query stays encoded.
        raw_path = unquote(path)
        try:
            body = self._read_body()
        except ValueError as exc:
            self._write(gateway_error(400, f"Bad Request: {exc}"))
            return
        request = Request(method=self.command, raw_path=raw_path, raw_query=raw_query,
                          headers=list(self.headers.items()), body=body, source_ip=self.client_address[0],
                          protocol=self.request_version)
        response = self.gateway.handle(request)
        self._write(response)
        log.info("%s %s %s %d ms", self.command, self.path, response.status,
                 (time.monotonic() - started) * 1000, extra={"function": response.function or "api"})

    def __getattr__(self, name: str) -> Any:
        # Every method goes to the gateway (TRACE included), which answers 404 for one no route takes.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = self.headers.get("content-length")
        if not length:
            return b""
        if not length.isdigit():
            raise ValueError("invalid Content-Length")
        return self.rfile.read(int(length))

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        names = set()
        for name, value in response.headers:
            names.add(name.lower())
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # _serve logs one line per request, attributed to the function


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    # A port left in TIME_WAIT by the last `make dev` must not stop this one.
    allow_reuse_address = True


def bind(gateway: ApiGateway, host: str = "127.0.0.1", port: int = 3000) -> ApiServer:
    """Bind now (so a taken port fails before anything starts); serve with serve_forever() later."""
    handler = type("RequestHandler", (_RequestHandler,), {"gateway": gateway})
    return ApiServer((host, port), handler)
