"""One console for the local stack: the functions' JSON logs and metrics rendered as one readable line each.

Powertools prints a JSON object per log line (and an EMF object per metrics flush) to stdout, as CloudWatch
wants. Here they become `HH:MM:SS LEVEL function message key=value...`, naming the function that logged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

# Keys every Powertools line carries; they say nothing a person reading the console needs.
_HIDDEN = {
    "level", "location", "message", "timestamp", "service", "sampling_rate", "cold_start", "function_name",
    "function_memory_size", "function_arn", "function_request_id", "xray_trace_id", "exception",
    "exception_name", "exception_notes", "stack_trace",
}
_MAX_VALUE = 160
_COLORS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "31;1", "METRIC": "36"}

_local = threading.local()


@contextmanager
def attributed(function: str) -> Iterator[None]:
    """Lines written by this thread inside the block are attributed to `function`."""
    previous = getattr(_local, "function", None)
    _local.function = function
    try:
        yield
    finally:
        _local.function = previous


def current_function() -> str | None:
    return getattr(_local, "function", None)


def short_name(function: str) -> str:
    return function.removesuffix("Function") or function


class Console:
    """A text stream: whole lines of JSON are rendered, anything else passes through unchanged."""

    def __init__(self, out: IO[str], color: bool | None = None):
        self.out = out
        if color is None:
            color = bool(getattr(out, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")
        self.color = color
        self._lock = threading.Lock()
        self._pending = threading.local()  # a partial line per thread, so threads never interleave mid-line

    # the text stream protocol (enough for print(), logging.StreamHandler and redirect_stdout)
    def write(self, text: str) -> int:
        buffered = getattr(self._pending, "text", "") + text
        *lines, rest = buffered.split("\n")
        self._pending.text = rest
        for line in lines:
            rendered = self.render(line)
            if rendered is not None:
                self.emit(rendered)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.out.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return getattr(self.out, "encoding", "utf-8")

    # rendering
    def emit(self, line: str) -> None:
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def line(self, level: str, source: str, message: str, fields: dict[str, Any] | None = None) -> str:
        stamp = time.strftime("%H:%M:%S")
        lvl = f"{level:<7} "
        src = f"{source:<19}"
        if self.color:
            lvl = f"\033[{_COLORS.get(level, '0')}m{lvl}\033[0m"
            src = f"\033[1m{src}\033[0m"
        extra = " ".join(f"{k}={_value(v)}" for k, v in (fields or {}).items())
        text = " ".join(part for part in (message, extra) if part)
        return f"{stamp} {lvl}{src} {text}"

    def render(self, text: str) -> str | None:
        stripped = text.strip()
        if not (stripped.startswith("{") and stripped.endswith("}")):
            return text
        try:
            record = json.loads(stripped)
        except ValueError:
            return text
        if not isinstance(record, dict):
            return text
        source = short_name(current_function() or str(record.get("function_name") or "reverie"))
        if "_aws" in record:
            return self._metrics(source, record)
        if "level" not in record or "message" not in record:
            return text
        fields = {k: v for k, v in record.items() if k not in _HIDDEN}
        out = self.line(str(record["level"]), source, str(record["message"]), fields)
        if record.get("exception"):
            out += "\n" + "\n".join("    " + part for part in str(record["exception"]).splitlines())
        return out

    def _metrics(self, source: str, record: dict[str, Any]) -> str | None:
        names = [m["Name"] for block in record["_aws"].get("CloudWatchMetrics", []) for m in block.get("Metrics", [])]
        values = {}
        for name in names:
            value = record.get(name)
            values[name] = value[0] if isinstance(value, list) and len(value) == 1 else value
        return self.line("METRIC", source, "", values) if values else None


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    if isinstance(value, str) and (" " in text or not text):
        text = json.dumps(text)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


class ConsoleHandler(logging.Handler):
    """For the runner's own (standard library) log records: same console, same line shape."""

    def __init__(self, console: Console, source: str = "local"):
        super().__init__()
        self.console = console
        self.source = source

    def emit(self, record: logging.LogRecord) -> None:
        try:
            source = getattr(record, "function", None) or self.source
            line = self.console.line(record.levelname, short_name(source), record.getMessage())
            if record.exc_info:
                line += "\n" + "\n".join("    " + part for part in self.format_exception(record).splitlines())
            self.console.emit(line)
        except Exception:
            self.handleError(record)

    def format_exception(self, record: logging.LogRecord) -> str:
        return logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]


def install(out: IO[str] | None = None, *, capture_stdout: bool = False) -> Console:
    """The runner's own log lines to one console on `out` (default: the real stdout).

    With capture_stdout, sys.stdout itself goes through the console, so what the functions print (the
    metrics Powertools flushes) is rendered too.
    """
    console = Console(out or sys.stdout)
    local = logging.getLogger("reverie.local")
    local.handlers = [ConsoleHandler(console)]
    local.setLevel(logging.INFO)
    local.propagate = False
    if capture_stdout:
        sys.stdout = console  # type: ignore[assignment]
    return console


def attach_functions(console: Console) -> None:
    """The functions' Powertools logger writes to the console (call once their environment is set)."""
    from reverie.platform.observability import logger

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(console)
