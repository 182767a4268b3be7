"""Waiting for something the system does in the background."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.1) -> Any:
    """Poll until `condition()` is truthy and return it; fail with the last value after the timeout."""
    deadline = time.monotonic() + timeout_s
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = condition()
    assert value, f"condition not met within {timeout_s} s (last value: {value!r})"
    return value
