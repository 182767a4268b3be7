"""The template's functions loaded in process and invoked the way the Lambda runtime invokes them.

As in Lambda, a function runs in instances (execution environments), and an instance serves one invocation at a
time: whatever a handler module keeps between invocations (a resolver's current event) belongs to one request.
An instance is its own import of the handler module (that import is its cold start). An invocation takes an idle
instance of its function, the most recently used first; when none is idle it starts another, up to the
function's concurrency (its ReservedConcurrentExecutions or its SQS trigger's MaximumConcurrency in
template.yaml, else DEFAULT_CONCURRENCY), and beyond that it waits for one to be free. The process's clients
(reverie.platform.clients) are shared by every instance, as the runner shares them by design.

An invocation gets a JSON copy of its event and a context with the function's Timeout, started when an instance
takes it; its answer must survive JSON, as Lambda's does.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from reverie_dev.local.console import attributed
from reverie_dev.local.context import LambdaContext
from reverie_dev.local.template import FunctionSpec, Template

log = logging.getLogger("reverie.local")

Handler = Callable[[dict[str, Any], Any], Any]

# Instances at most of a function whose template sets no concurrency (in AWS it would share the account's).
DEFAULT_CONCURRENCY = 10


class FunctionError(Exception):
    """An invocation that failed as Lambda reports it: errorType and errorMessage."""

    def __init__(self, function: str, error_type: str, message: str):
        super().__init__(f"{function}: {error_type}: {message}")
        self.function = function
        self.error_type = error_type
        self.message = message


def load_handler(spec: FunctionSpec, instance: int = 1) -> Handler:
    """The handler of a fresh import of the function's module: one instance's code."""
    _, _, attr = spec.handler.rpartition(".")
    # Every function's module is called app.py: a unique name per function (and instance) keeps them apart.
    name = f"reverie_fn_{spec.logical_id}" + (f"_{instance}" if instance > 1 else "")
    module_spec = importlib.util.spec_from_file_location(name, spec.app_path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"{spec.logical_id}: cannot load {spec.app_path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, attr)


class Instance:
    """One execution environment of a function: its own import of the handler module."""

    def __init__(self, handler: Handler):
        self.handler = handler


class LocalFunction:
    """A function of the template and its pool of instances (see the module docstring)."""

    def __init__(self, spec: FunctionSpec, memory_mb: int = 512, handler: Handler | None = None,
                 concurrency: int | None = None):
        self.spec = spec
        self.memory_mb = memory_mb
        self.concurrency = max(1, concurrency or spec.concurrency or DEFAULT_CONCURRENCY)
        self._code = handler  # the same code for every instance, instead of an import each (a test's stand-in)
        self._idle: list[Instance] = []
        self._changed = threading.Condition()
        self._serving = threading.local()  # .instance: the instance running this thread's invocation
        self._override: Handler | None = None
        self._own: Handler = self._run_own
        self._idle.append(self._start_instance(1))  # the first cold start happens at load: an import error shows
        self._instances = 1

    @property
    def name(self) -> str:
        return self.spec.logical_id

    @property
    def instances(self) -> int:
        """How many instances have been started (each serves one invocation at a time)."""
        return self._instances

    # ------------------------------------------------------------ what an invocation runs
    @property
    def handler(self) -> Handler:
        """What every instance runs: a replacement while one is set (LocalStack.override_handler), else the
        function's own code. The own code runs on the instance serving the invocation, so a replacement may
        call it (a test counting the real authorizer's calls)."""
        return self._override or self._own

    @handler.setter
    def handler(self, handler: Handler) -> None:
        self._override = None if handler == self._own else handler

    def _run_own(self, event: Any, context: Any) -> Any:
        instance = getattr(self._serving, "instance", None)
        if instance is not None:
            return instance.handler(event, context)
        with self._instance() as instance:  # called outside an invocation: take an instance for it
            return instance.handler(event, context)

    # ------------------------------------------------------------ the pool
    def _start_instance(self, number: int) -> Instance:
        return Instance(self._code or load_handler(self.spec, number))

    def _take(self) -> Instance:
        """An instance for one invocation: an idle one, a new one within the concurrency, or the next one free."""
        with self._changed:
            while not self._idle and self._instances >= self.concurrency:
                self._changed.wait()
            if self._idle:
                return self._idle.pop()  # last in, first out: the warmest instance serves next, as in Lambda
            self._instances += 1
            number = self._instances
        try:
            instance = self._start_instance(number)  # a cold start, outside the lock: others go on meanwhile
        except BaseException:
            with self._changed:
                self._instances -= 1
                self._changed.notify()
            raise
        log.debug("%s started instance %d", self.name, number, extra={"function": self.name})
        return instance

    def _give_back(self, instance: Instance) -> None:
        with self._changed:
            self._idle.append(instance)
            self._changed.notify()

    @contextmanager
    def _instance(self) -> Iterator[Instance]:
        instance = self._take()
        try:
            yield instance
        finally:
            self._give_back(instance)

    def invoke(self, event: Any, *, expected_errors: tuple[str, ...] = ()) -> Any:
        """Run the handler once, on an instance of its own. Raises FunctionError for what Lambda would report as a
        function error.

        expected_errors: error messages that are an answer rather than a fault (an authorizer's
        "Unauthorized"), logged quietly.
        """
        payload = json.loads(json.dumps(event))
        with attributed(self.name):
            try:
                instance = self._take()
            except Exception as exc:
                log.error("init failed: %s: %s", type(exc).__name__, exc, exc_info=exc, extra={"function": self.name})
                module = self.spec.handler.rpartition(".")[0]
                raise FunctionError(self.name, "Runtime.ImportModuleError",
                                    f"Unable to import module '{module}': {exc}") from exc
            try:
                return self._run(instance, payload, expected_errors)
            finally:
                self._give_back(instance)

    def _run(self, instance: Instance, payload: Any, expected_errors: tuple[str, ...]) -> Any:
        context = LambdaContext(function_name=self.name, timeout_s=self.spec.timeout,
                                memory_limit_in_mb=self.memory_mb)
        started = time.monotonic()
        self._serving.instance = instance
        try:
            answer = self.handler(payload, context)
        except Exception as exc:
            if str(exc) in expected_errors:
                log.debug("%s answered %s", self.name, exc, extra={"function": self.name})
            else:
                log.error("invocation failed: %s: %s", type(exc).__name__, exc, exc_info=exc,
                          extra={"function": self.name})
            raise FunctionError(self.name, type(exc).__name__, str(exc)) from exc
        finally:
            self._serving.instance = None
        elapsed = time.monotonic() - started
        # A thread cannot be stopped from outside, so a slow handler runs to its end; its answer is then
        # thrown away, as Lambda would have stopped it at its Timeout.
        if elapsed > self.spec.timeout:
            message = f"Task timed out after {self.spec.timeout:.2f} seconds"
            log.error(message, extra={"function": self.name})
            raise FunctionError(self.name, "Sandbox.Timedout", message)
        try:
            return json.loads(json.dumps(answer))
        except (TypeError, ValueError) as exc:
            log.error("answer is not JSON: %s", exc, extra={"function": self.name})
            raise FunctionError(self.name, "Runtime.MarshalError", f"Unable to marshal response: {exc}") from exc


def load_all(template: Template) -> dict[str, LocalFunction]:
    """Every function of the template, each with its first instance started."""
    out = {}
    for lid, spec in template.functions().items():
        props = template.resources[lid].get("Properties") or {}
        memory = int(props.get("MemorySize", template.globals.get("MemorySize", 128)))
        out[lid] = LocalFunction(spec, memory)
    return out
