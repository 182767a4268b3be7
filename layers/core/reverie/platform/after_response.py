"""Work that runs after a function has answered, so the caller never waits for it (the chat turn's publish).

In Lambda an internal extension, registered at cold start, runs an invocation's deferred work once the handler
has returned and only then asks for the next event. Elsewhere one background thread runs it.
"""

from __future__ import annotations

import functools
import http.client
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from reverie.platform.observability import logger, metrics

EXTENSION_NAME = "reverie-after-response"
EXTENSIONS_API = "/2020-01-01/extension"
REGISTER_TIMEOUT_S = 5.0
# The extension stops waiting for the handler this long before the invocation's deadline: Lambda ends an
# invocation at its deadline whatever happens, and work deferred by then still gets its turn.
DEADLINE_MARGIN_S = 1.0
NEXT_EVENT_ATTEMPTS = 3
NEXT_EVENT_RETRY_S = 0.5

Work = tuple[Callable[..., Any], tuple[Any, ...]]

_invocation = threading.local()  # .pending: what the handler running on this thread has deferred
_runner: Runner | None = None
_runner_lock = threading.Lock()


class ExtensionsApiError(Exception):
    """The Extensions API refused a call."""


class Runner(Protocol):
    def finished(self, work: list[Work], request_id: str | None) -> None: ...
    def submit(self, work: list[Work]) -> None: ...
    def drain(self, timeout: float) -> bool: ...


# ---------------------------------------------------------------- what handlers and logic call


def defer(fn: Callable[..., Any], *args: Any) -> None:
    """Run fn(*args) after the current invocation's response; outside one, in the background at once."""
    pending = getattr(_invocation, "pending", None)
    if pending is None:
        runner().submit([(fn, args)])
    else:
        pending.append((fn, args))


def invocation_done(request_id: str | None = None) -> None:
    """The handler has returned: what it deferred may run now."""
    pending = getattr(_invocation, "pending", None) or []
    _invocation.pending = None
    runner().finished(pending, request_id)


def runs_deferred(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap a Lambda handler so that what it defers runs after it returns. Apply it outermost, so the work
    starts once the logs, metrics and trace of the invocation are done. Applying it happens at import, which
    is Lambda's Init phase: the only time an extension may register."""
    runner()

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        _invocation.pending = []
        try:
            return handler(event, context)
        finally:
            invocation_done(getattr(context, "aws_request_id", None))

    return wrapper


def drain(timeout: float = 10.0) -> bool:
    """Wait until everything deferred so far has run; False if it has not within `timeout` seconds."""
    return runner().drain(timeout)


def runner() -> Runner:
    """The process's runner, chosen once: the extension in Lambda, the background worker elsewhere."""
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = _make_runner()
        return _runner


def _make_runner() -> Runner:
    from reverie.platform.config import get_settings

    runtime_api = get_settings().aws_lambda_runtime_api
    if not runtime_api:
        return BackgroundWorker()
    try:
        return Extension(runtime_api).register()
    except (OSError, http.client.HTTPException, ExtensionsApiError) as exc:
        # Work left to a thread Lambda may freeze could wait for the next invocation: run it before answering.
        logger.warning("after-response extension not registered: deferred work runs before each response",
                       extra={"error": f"{type(exc).__name__}: {exc}"})
        return Inline()


def run_work(batch: list[Work]) -> None:
    """Run deferred work in order. Work that raises is logged with its error, and the rest still runs."""
    for fn, args in batch:
        try:
            fn(*args)
        except Exception as exc:
            logger.exception("work deferred past the response failed",
                             extra={"work": getattr(fn, "__qualname__", repr(fn)),
                                    "error": f"{type(exc).__name__}: {exc}"})
    # The handler flushed its metrics when it returned; these were added since.
    if metrics.metric_set:
        metrics.flush_metrics()


# ---------------------------------------------------------------- runners


class Extension:
    """The internal extension: for each INVOKE event it waits for the handler to return, runs what the handler
    deferred, and only then asks for the next event. Lambda sends the response as soon as the handler returns
    but freezes the environment only once every extension has asked, so the work is never frozen midway."""

    def __init__(self, runtime_api: str, name: str = EXTENSION_NAME):
        self.runtime_api = runtime_api
        self.name = name
        self.extension_id = ""
        self.thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._pending: list[Work] = []
        self._returned: set[str | None] = set()
        self._running = False
        self._stopped = False

    def register(self) -> Extension:
        """Register (blocking: it must be done before the runtime asks for its first event), then start."""
        # Internal extensions may register for INVOKE only; SHUTDOWN is for external ones.
        response, _ = self._call("POST", "/register", json.dumps({"events": ["INVOKE"]}).encode(),
                                 {"Lambda-Extension-Name": self.name, "Content-Type": "application/json"},
                                 timeout=REGISTER_TIMEOUT_S)
        self.extension_id = response.getheader("Lambda-Extension-Identifier") or ""
        if not self.extension_id:
            raise ExtensionsApiError("the register answer has no Lambda-Extension-Identifier")
        self.thread = threading.Thread(target=self.run, name="after-response-extension", daemon=True)
        self.thread.start()
        return self

    def finished(self, work: list[Work], request_id: str | None) -> None:
        with self._cond:
            if not self._stopped:
                self._pending.extend(work)
                self._returned.add(request_id)
                self._cond.notify_all()
                return
        if work:
            run_work(work)  # no extension loop any more: before the response, as if never deferred

    def submit(self, work: list[Work]) -> None:
        with self._cond:
            if not self._stopped:
                self._pending.extend(work)  # runs after the current (or next) invocation
                return
        run_work(work)

    def drain(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._running, timeout)

    def run(self) -> None:
        failures = 0
        while True:
            try:
                event = self._next_event()
            except (OSError, http.client.HTTPException, ExtensionsApiError, ValueError) as exc:
                failures += 1
                logger.error("after-response extension could not get the next event",
                             extra={"error": f"{type(exc).__name__}: {exc}", "attempt": failures})
                if failures >= NEXT_EVENT_ATTEMPTS:
                    self._stop()
                    return
                time.sleep(NEXT_EVENT_RETRY_S)
                continue
            failures = 0
            if event.get("eventType") == "SHUTDOWN":
                self._stop()
                return
            self._wait_for_handler(event.get("requestId"), event.get("deadlineMs"))
            self._run_pending()

    def _next_event(self) -> dict[str, Any]:
        # No timeout: this call blocks, frozen with the environment, until the next invocation.
        _, body = self._call("GET", "/event/next", None, {"Lambda-Extension-Identifier": self.extension_id})
        event = json.loads(body)
        if not isinstance(event, dict):
            raise ValueError("the next event is not a JSON object")
        return event

    def _wait_for_handler(self, request_id: str | None, deadline_ms: int | None) -> None:
        timeout = max(0.0, deadline_ms / 1000 - time.time() - DEADLINE_MARGIN_S) if deadline_ms else None
        with self._cond:
            returned = self._cond.wait_for(lambda: request_id in self._returned, timeout)
            # One invocation at a time: whatever else is recorded belongs to invocations already over.
            self._returned.clear()
        if not returned:
            logger.warning("the handler had not returned near its deadline; its deferred work runs now",
                           extra={"request_id": request_id})

    def _run_pending(self) -> None:
        with self._cond:
            batch, self._pending = self._pending, []
            self._running = True
        try:
            if batch:
                run_work(batch)
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()

    def _stop(self) -> None:
        with self._cond:
            self._stopped = True
        self._run_pending()

    def _call(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
              timeout: float | None = None) -> tuple[http.client.HTTPResponse, bytes]:
        connection = http.client.HTTPConnection(self.runtime_api, timeout=timeout)
        try:
            connection.request(method, EXTENSIONS_API + path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise ExtensionsApiError(f"{method} {path}: HTTP {response.status}: {data[:300]!r}")
        return response, data


class BackgroundWorker:
    """Outside Lambda (the local runner, tests, benchmarks): one thread runs deferred work in order, right
    after the handler that deferred it returns."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[Work]] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._submitted = 0
        self._done = 0
        self.thread = threading.Thread(target=self._run, name="after-response", daemon=True)
        self.thread.start()

    def finished(self, work: list[Work], request_id: str | None = None) -> None:
        self.submit(work)

    def submit(self, work: list[Work]) -> None:
        if not work:
            return
        with self._cond:  # counted and queued together, so drain() waits for exactly what came before it
            self._submitted += 1
            self._queue.put(work)

    def drain(self, timeout: float) -> bool:
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                run_work(batch)
            finally:
                with self._cond:
                    self._done += 1
                    self._cond.notify_all()


class Inline:
    """In Lambda without a registered extension: deferred work runs before the response, as if not deferred."""

    def finished(self, work: list[Work], request_id: str | None = None) -> None:
        if work:
            run_work(work)

    def submit(self, work: list[Work]) -> None:
        self.finished(work)

    def drain(self, timeout: float) -> bool:
        return True
