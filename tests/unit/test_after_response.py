"""Work deferred past the response: the extension loop against a small Extensions API on localhost, and the
background worker used outside Lambda."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reverie.platform import after_response
from reverie.platform.config import reset_settings


class ExtensionsApi:
    """What Lambda's Extensions API does for one internal extension: register, then INVOKE events from
    /event/next (one per entry of `invokes`), then SHUTDOWN. Every call is written to `log`."""

    def __init__(self, invokes: list[dict] | None = None, *, refuse_register: bool = False):
        self.invokes = list(invokes if invokes is not None else [{"requestId": "req-1"}])
        self.refuse_register = refuse_register
        self.log: list[str] = []
        self.registered: dict = {}
        self.invoke_sent = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/2020-01-01/extension/register" or api.refuse_register:
                    return self._answer(403, {"errorType": "Extension.Forbidden"})
                api.registered = {"name": self.headers["Lambda-Extension-Name"], "events": body["events"]}
                api.log.append("register")
                self._answer(200, {"functionName": "chat", "functionVersion": "$LATEST", "handler": "app.handler"},
                             {"Lambda-Extension-Identifier": "ext-1"})

            def do_GET(self):
                if self.path != "/2020-01-01/extension/event/next" or \
                        self.headers["Lambda-Extension-Identifier"] != "ext-1":
                    return self._answer(403, {"errorType": "Extension.InvalidExtensionIdentifier"})
                api.log.append("next")
                deadline = int(time.time() * 1000) + 30_000
                if api.invokes:
                    event = {"eventType": "INVOKE", "deadlineMs": deadline,
                             "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:chat",
                             **api.invokes.pop(0)}
                    self._answer(200, event)
                    api.invoke_sent.set()
                else:
                    self._answer(200, {"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline})

            def _answer(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def extensions_api():
    made = []

    def make(*args, **kwargs) -> ExtensionsApi:
        made.append(ExtensionsApi(*args, **kwargs))
        return made[-1]

    yield make
    for api in made:
        api.close()


def test_an_invokes_deferred_work_completes_before_the_extension_asks_for_the_next_event(extensions_api):
    api = extensions_api()
    extension = after_response.Extension(api.address).register()
    assert api.registered == {"name": after_response.EXTENSION_NAME, "events": ["INVOKE"]}
    assert api.invoke_sent.wait(5)
    time.sleep(0.2)
    assert api.log == ["register", "next"]  # the handler has not returned: the environment must not be frozen

    def publish():
        time.sleep(0.2)
        api.log.append("deferred work done")

    extension.finished([(publish, ())], "req-1")  # the handler returns
    extension.thread.join(5)
    assert not extension.thread.is_alive()
    assert api.log == ["register", "next", "deferred work done", "next"]


def test_deferred_work_that_raises_is_logged_and_the_rest_still_runs_before_the_next_event(extensions_api, caplog):
    api = extensions_api()
    extension = after_response.Extension(api.address).register()
    assert api.invoke_sent.wait(5)

    def broken():
        raise RuntimeError("topic unreachable")

    extension.finished([(broken, ()), (api.log.append, ("second work done",))], "req-1")
    extension.thread.join(5)
    assert api.log == ["register", "next", "second work done", "next"]
    failed = [r for r in caplog.records if r.getMessage() == "work deferred past the response failed"]
    assert len(failed) == 1 and "topic unreachable" in failed[0].error and failed[0].levelname == "ERROR"


def test_the_extension_pairs_each_invoke_with_its_own_handler_return(extensions_api):
    api = extensions_api([{"requestId": "req-1"}, {"requestId": "req-2"}])
    extension = after_response.Extension(api.address).register()
    assert api.invoke_sent.wait(5)
    extension.finished([(api.log.append, ("work of req-1",))], "req-1")
    deadline = time.monotonic() + 5
    while api.log.count("next") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert api.log == ["register", "next", "work of req-1", "next"]  # waits for req-2's handler
    extension.finished([(api.log.append, ("work of req-2",))], "req-2")
    extension.thread.join(5)
    assert api.log == ["register", "next", "work of req-1", "next", "work of req-2", "next"]


def test_a_handler_that_never_returns_holds_the_extension_only_until_near_its_deadline(extensions_api, monkeypatch):
    monkeypatch.setattr(after_response, "DEADLINE_MARGIN_S", 29.7)  # the invoke's deadline is 30 s away
    api = extensions_api()
    extension = after_response.Extension(api.address).register()
    extension.submit([(api.log.append, ("work deferred outside the handler",))])
    extension.thread.join(5)
    assert api.log == ["register", "next", "work deferred outside the handler", "next"]


def test_without_a_registered_extension_deferred_work_runs_before_the_response(extensions_api, monkeypatch):
    api = extensions_api(refuse_register=True)
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", api.address)
    reset_settings()
    try:
        runner = after_response._make_runner()
    finally:
        monkeypatch.delenv("AWS_LAMBDA_RUNTIME_API")
        reset_settings()
    assert isinstance(runner, after_response.Inline)
    ran = []
    runner.finished([(ran.append, ("work",))], "req-1")
    assert ran == ["work"]


def test_outside_lambda_deferred_work_runs_after_the_handler_returns():
    ran = []

    @after_response.runs_deferred
    def handler(event, context):
        after_response.defer(ran.append, event["n"])
        time.sleep(0.1)
        assert ran == []  # nothing deferred runs while the handler is still running
        return {"ok": True}

    assert handler({"n": 1}, None) == {"ok": True}
    assert after_response.drain(5)
    assert ran == [1]


def test_drain_waits_for_work_deferred_so_far_and_says_when_it_times_out():
    gate = threading.Event()
    ran = []
    after_response.defer(gate.wait, 5)
    after_response.defer(ran.append, "after the gate")
    assert after_response.drain(0.2) is False and ran == []
    gate.set()
    assert after_response.drain(5) is True and ran == ["after the gate"]
