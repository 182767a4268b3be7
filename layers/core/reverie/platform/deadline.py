"""How long an invocation has left, taken once from the Lambda context, so every step can fit in it: a model
call gets the time its purpose deserves but never more than is left, and a loop stops starting work that
could not finish."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() when the time is up

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @classmethod
    def of(cls, context, *, reserve_s: float = 0.0, default_s: float = 30.0) -> Deadline:
        """The invocation's deadline less `reserve_s` (what the answer itself needs); outside Lambda (no
        context), `default_s` from now."""
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        left = remaining_ms() / 1000 if remaining_ms else default_s
        return cls.after(max(0.0, left - reserve_s))

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0

    def budget(self, wanted_s: float) -> float:
        """`wanted_s`, or what is left if that is less."""
        return min(wanted_s, self.remaining())
