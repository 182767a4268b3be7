"""The template's functions loaded in process and invoked the way the Lambda runtime invokes them.

Each handler module is imported once (that import is the cold start). An invocation gets a JSON copy of
its event and a context with the function's Timeout; its answer must survive JSON, as Lambda's does.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from reverie_dev.local.console import attributed
from reverie_dev.local.context import LambdaContext
from reverie_dev.local.template import FunctionSpec, Template

log = logging.getLogger("reverie.local")

Handler = Callable[[dict[str, Any], Any], Any]


class FunctionError(Exception):
    """An invocation that failed as Lambda reports it: errorType and errorMessage."""

    def __init__(self, function: str, error_type: str, message: str):
        super().__init__(f"{function}: {error_type}: {message}")
        self.function = function
        self.error_type = error_type
        self.message = message


def load_handler(spec: FunctionSpec) -> Handler:
    _, _, attr = spec.handler.rpartition(".")
    # Every function's module is called app.py: a unique name per function keeps them apart.
    module_spec = importlib.util.spec_from_file_location(f"reverie_fn_{spec.logical_id}", spec.app_path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"{spec.logical_id}: cannot load {spec.app_path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, attr)


class LocalFunction:
    def __init__(self, spec: FunctionSpec, memory_mb: int = 512, handler: Handler | None = None):
        self.spec = spec
        self.memory_mb = memory_mb
        self.handler: Handler = handler or load_handler(spec)

    @property
    def name(self) -> str:
        return self.spec.logical_id

    def invoke(self, event: Any, *, expected_errors: tuple[str, ...] = ()) -> Any:
        """Run the handler once. Raises FunctionError for what Lambda would report as a function error.

        expected_errors: error messages that are an answer rather than a fault (an authorizer's
        "Unauthorized"), logged quietly.
        """
        payload = json.loads(json.dumps(event))
        context = LambdaContext(function_name=self.name, timeout_s=self.spec.timeout,
                                memory_limit_in_mb=self.memory_mb)
        started = time.monotonic()
        with attributed(self.name):
            try:
                answer = self.handler(payload, context)
            except Exception as exc:
                if str(exc) in expected_errors:
                    log.debug("%s answered %s", self.name, exc, extra={"function": self.name})
                else:
                    log.error("invocation failed: %s: %s", type(exc).__name__, exc, exc_info=exc,
                              extra={"function": self.name})
                raise FunctionError(self.name, type(exc).__name__, str(exc)) from exc
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
    """Every function of the template, imported once."""
    out = {}
    for lid, spec in template.functions().items():
        props = template.resources[lid].get("Properties") or {}
        memory = int(props.get("MemorySize", template.globals.get("MemorySize", 128)))
        out[lid] = LocalFunction(spec, memory)
    return out
