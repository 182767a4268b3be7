"""EventBridge Scheduler on this machine: the template's schedule expressions, their next firing, their event.

Understands `rate(N minute|minutes|hour|hours|day|days)` and six-field `cron(min hour day-of-month month
day-of-week year)` in UTC, with `*`, `?`, ranges, steps, lists and JAN-DEC / SUN-SAT names (day-of-week 1-7
is SUN-SAT, as in AWS). `L`, `W` and `#` are refused: no schedule of ours uses them.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("reverie.local")

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}
_SEARCH_DAYS = 366 * 5


class Rate:
    def __init__(self, seconds: float):
        if seconds <= 0:
            raise ValueError("a rate must be positive")
        self.seconds = seconds

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)

    def __repr__(self) -> str:
        return f"every {self.seconds:g} s"


class Cron:
    def __init__(self, fields: str):
        parts = fields.split()
        if len(parts) != 6:
            raise ValueError(f"cron needs 6 fields (min hour day-of-month month day-of-week year), got {fields!r}")
        minute, hour, dom, month, dow, year = parts
        if (dom == "?") == (dow == "?"):
            raise ValueError("cron: exactly one of day-of-month and day-of-week must be '?'")
        self.text = fields
        self.minutes = _field(minute, 0, 59)
        self.hours = _field(hour, 0, 23)
        self.days = _field(dom, 1, 31)
        self.months = _field(month, 1, 12, _MONTHS)
        self.weekdays = _field(dow, 1, 7, _DAYS)
        self.years = _field(year, 1970, 2199)

    def matches_day(self, day: datetime) -> bool:
        aws_weekday = (day.weekday() + 1) % 7 + 1  # Monday is 2, Sunday is 1
        return (day.year in self.years and day.month in self.months and day.day in self.days
                and aws_weekday in self.weekdays)

    def next_after(self, moment: datetime) -> datetime:
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(_SEARCH_DAYS):
            if self.matches_day(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ValueError(f"cron({self.text}) never fires in the next five years")

    def __repr__(self) -> str:
        return f"cron({self.text})"


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    if text in ("*", "?"):
        return set(range(low, high + 1))
    out: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _number(a, names), _number(b, names)
        else:
            first = _number(span, names)
            last = high if step_text else first
        if not (low <= first <= high and low <= last <= high) or step < 1:
            raise ValueError(f"cron: {part!r} is out of range {low}-{high}")
        out.update(range(first, last + 1, step))
    return out


def _number(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ValueError(f"cron: {text!r} is not understood locally (L, W and # are not supported)")
    return int(text)


def parse(expression: str) -> Rate | Cron:
    expression = expression.strip()
    rate = _RATE.match(expression)
    if rate:
        count, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        return Rate(count * _UNIT_S[unit])
    cron = _CRON.match(expression)
    if cron:
        return Cron(cron.group(1))
    raise ValueError(f"unsupported schedule expression {expression!r}")


def scheduler_event(name: str, stack_name: str = "reverie", *, region: str = "us-east-1",
                    account: str = "123456789012", now: datetime | None = None) -> dict[str, Any]:
    """What EventBridge Scheduler hands the function (the shape of events/health_probe.json)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": account,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:scheduler:{region}:{account}:schedule/default/{stack_name}-{name}"],
        "detail": {},
    }


@dataclass
class Entry:
    name: str
    function: str
    expression: str
    timing: Rate | Cron | None = None
    due: datetime | None = None


class Scheduler(threading.Thread):
    """Fires each schedule on its expression (or every `rate_s` seconds when set). One firing at a time."""

    def __init__(self, entries: list[Entry], fire: Callable[[str], Any], rate_s: float | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        super().__init__(name="scheduler", daemon=True)
        self.entries = []
        self.fire = fire
        self.clock = clock
        self._stopping = threading.Event()
        for entry in entries:
            try:
                entry.timing = Rate(rate_s) if rate_s else parse(entry.expression)
            except ValueError as exc:
                log.warning("schedule %s is not fired locally: %s (fire it with `reverie schedule run %s`)",
                            entry.name, exc, entry.name)
                continue
            self.entries.append(entry)

    def describe(self) -> str:
        return ", ".join(f"{e.name} {e.timing!r}" for e in self.entries) or "none"

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        now = self.clock()
        for entry in self.entries:
            assert entry.timing is not None
            entry.due = entry.timing.next_after(now)
        while self.entries and not self._stopping.is_set():
            entry = min(self.entries, key=lambda e: e.due or now)
            assert entry.due is not None and entry.timing is not None
            wait = (entry.due - self.clock()).total_seconds()
            if wait > 0:
                self._stopping.wait(min(wait, 1.0))
                continue
            try:
                self.fire(entry.name)
            except Exception:
                log.exception("schedule %s failed", entry.name, extra={"function": entry.function})
            entry.due = entry.timing.next_after(max(entry.due, self.clock()))
