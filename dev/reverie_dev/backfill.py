"""`reverie backfill`: import conversations held before Reverie was, and queue narratives for the users they made.

Both go through the admin function (reverie.ops.admin: backfill.conversations, backfill.narratives), on the running
`make dev` or a deployed stack (--stack), as `reverie project` does: IAM is the auth, nothing needs an API key, and
the jobs are made, checked and published where the stack runs.

Input, one of:
- JSON lines, one conversation a line: {"user_id", "session_id", "turns": [{"role", "content", "created_at"}, ...],
  "metadata"?}; `created_at` is RFC 3339 (without an offset, UTC), `role` user, assistant or system.
- The LoCoMo format (a JSON list of samples with a `conversation` of dated sessions): each speaker becomes a user,
  `<sample_id>:<speaker>`, whose session `<sample_id>:s<N>` holds their turns (role user) and the other speaker's
  (role assistant, named), at the session's date and time (taken as UTC), a second apart.

Each user's conversations are sent in time order, a batch at a time, at most --rate jobs a second. The stack
derives each job's id from what it holds and skips the jobs it published before, so running the same command
again publishes nothing new, and an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reverie.domain.errors import ValidationFailed
from reverie.jobs.backfill import read_conversation

# What one invocation carries at most: the admin function's answer must come within its 30 s, and a Lambda request
# is at most 6 MB.
BATCH_CONVERSATIONS = 25
BATCH_BYTES = 1024 * 1024
LOCOMO_DATE = "%I:%M %p on %d %B, %Y"
_SESSION_DATE = re.compile(r"^session_(\d+)_date_time$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")
SHOWN_FAILURES = 20


class InputError(Exception):
    """The file cannot be read as conversations: one line saying why."""


@dataclass
class Item:
    """One conversation of the input: where it is (for messages), its user, when it starts, how to read it."""

    where: str
    user_id: str
    starts: datetime
    turns: int
    load: Callable[[], dict[str, Any]]


@dataclass
class Source:
    items: list[Item]
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (where, why)


# ---------------------------------------------------------------- reading


def read_source(path: Path, fmt: str = "auto") -> Source:
    """The file's conversations, each user's in time order (users in the order they first appear)."""
    if not path.is_file():
        raise InputError(f"no file at {path}")
    if fmt == "auto":
        fmt = "locomo" if _first_character(path) == "[" else "jsonl"
    source = read_locomo(path) if fmt == "locomo" else read_jsonl(path)
    first_seen: dict[str, int] = {}
    for index, item in enumerate(source.items):
        first_seen.setdefault(item.user_id, index)
    order = {id(item): index for index, item in enumerate(source.items)}
    source.items.sort(key=lambda i: (first_seen[i.user_id], i.starts, order[id(i)]))
    return source


def _first_character(path: Path) -> str:
    with path.open("rb") as f:
        while chunk := f.read(4096):
            text = chunk.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
            if text:
                return text[0]
    raise InputError(f"{path} is empty")


def read_jsonl(path: Path) -> Source:
    """One conversation a line. A line that is not one is reported (with its number) and left out; the rest are
    indexed, not kept: each is read again from its offset when its turn comes."""
    source = Source(items=[])
    with path.open("rb") as f:
        number, offset = 0, 0
        for raw in iter(f.readline, b""):
            number += 1
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            where = f"line {number}"
            try:
                data = json.loads(raw)
                conversation = read_conversation(data)
            except (ValueError, ValidationFailed) as exc:
                source.invalid.append((where, _reason(exc)))
                continue
            source.items.append(Item(where, conversation.user_id, min(t.created_at for t in conversation.turns),
                                     len(conversation.turns), _line_at(path, start)))
    return source


def _line_at(path: Path, offset: int) -> Callable[[], dict[str, Any]]:
    def load() -> dict[str, Any]:
        with path.open("rb") as f:
            f.seek(offset)
            return json.loads(f.readline())

    return load


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationFailed):
        return exc.message
    return f"not JSON: {exc}" if isinstance(exc, json.JSONDecodeError) else str(exc)


def read_locomo(path: Path) -> Source:
    try:
        samples = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path} is not JSON: {exc}") from None
    if not isinstance(samples, list):
        raise InputError(f"{path} is not a LoCoMo file: a list of samples with a `conversation`")
    source = Source(items=[])
    for number, sample in enumerate(samples, start=1):
        if not isinstance(sample, dict) or not isinstance(sample.get("conversation"), dict):
            source.invalid.append((f"sample {number}", "it has no `conversation`"))
            continue
        for data in locomo_conversations(sample):
            where = f"{data['session_id']} of {data['user_id']}"
            try:
                conversation = read_conversation(data)
            except ValidationFailed as exc:
                source.invalid.append((where, exc.message))
                continue
            source.items.append(Item(where, conversation.user_id, conversation.turns[0].created_at,
                                     len(conversation.turns), lambda data=data: data))
    return source


def locomo_conversations(sample: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A LoCoMo sample's sessions as conversations, one per speaker per session (see the module docstring)."""
    conversation = sample["conversation"]
    sample_id = _safe(str(sample.get("sample_id") or "locomo"))
    speakers = [s for s in (conversation.get("speaker_a"), conversation.get("speaker_b")) if s]
    sessions = []
    for key, value in conversation.items():
        match = _SESSION_DATE.match(key)
        turns = conversation.get(f"session_{match.group(1)}") if match else None
        if match and isinstance(turns, list) and turns:
            sessions.append((int(match.group(1)), parse_locomo_date(value), turns))
    for speaker in speakers:
        user_id = f"{sample_id}:{_safe(speaker).lower()}"
        for number, starts, turns in sorted(sessions):
            yield {
                "user_id": user_id, "session_id": f"{sample_id}:s{number}",
                "metadata": {"imported_from": "locomo", "sample_id": sample_id},
                "turns": [{
                    "turn_id": _safe(str(turn.get("dia_id") or f"s{number}-{index}"), keep=":"),
                    "role": "user" if turn.get("speaker") == speaker else "assistant",
                    "content": _locomo_text(turn, speaker),
                    "created_at": (starts + timedelta(seconds=index)).isoformat(),
                } for index, turn in enumerate(turns)],
            }


def parse_locomo_date(value: str) -> datetime:
    """'4:20 pm on 3 March, 2022' -> 2022-03-03 16:20 UTC."""
    try:
        return datetime.strptime(value.strip(), LOCOMO_DATE).replace(tzinfo=UTC)
    except (ValueError, AttributeError):
        raise InputError(f"a LoCoMo session date {value!r} is not like '4:20 pm on 3 March, 2022'") from None


def _locomo_text(turn: dict[str, Any], speaker: str) -> str:
    text = str(turn.get("text") or "").strip()
    if turn.get("blip_caption"):
        text = f"{text} [shares {turn['blip_caption']}]".strip()
    return text if turn.get("speaker") == speaker else f"{turn.get('speaker')}: {text}"


def _safe(text: str, keep: str = "") -> str:
    """Text as an id part: what ids may not hold becomes '-' (':' too, unless kept: it separates our parts)."""
    unsafe = _UNSAFE if not keep else re.compile(f"[^A-Za-z0-9._@{re.escape(keep)}-]+")
    return unsafe.sub("-", text).strip("-._@:") or "x"


# ---------------------------------------------------------------- sending


@dataclass
class Totals:
    conversations: int = 0
    imported: int = 0
    invalid: int = 0
    turns: int = 0
    jobs: int = 0
    published: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why jobs were skipped, other than published before: once each

    def add(self, result: dict[str, Any]) -> None:
        self.conversations += 1
        if result.get("invalid"):
            self.invalid += 1
        else:
            self.imported += 1
        for name in ("turns", "jobs", "published", "skipped", "failed"):
            setattr(self, name, getattr(self, name) + int(result.get(name) or 0))
        if result.get("failed") or result.get("invalid"):
            who = f"{result.get('session_id') or '?'} of {result.get('user_id') or '?'}"
            self.failures += [f"{who}: {error}" for error in result.get("errors") or []]
        else:
            self.notes += [error for error in result.get("errors") or [] if error not in self.notes]


class RateLimit:
    """At most `per_s` jobs a second on average since the start: `wait` sleeps until the next batch may go."""

    def __init__(self, per_s: float, clock=time.monotonic, sleep=time.sleep):
        self.per_s, self.clock, self.sleep = per_s, clock, sleep
        self.started = clock()
        self.sent = 0

    def wait(self) -> None:
        if self.per_s > 0:
            self.sleep(max(0.0, self.started + self.sent / self.per_s - self.clock()))

    def spent(self, jobs: int) -> None:
        self.sent += jobs


def batches(items: list[Item], max_items: int, max_bytes: int) -> Iterator[list[tuple[Item, dict[str, Any]]]]:
    batch: list[tuple[Item, dict[str, Any]]] = []
    size = 0
    for item in items:
        data = item.load()
        cost = len(json.dumps(data))
        if batch and (len(batch) >= max_items or size + cost > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((item, data))
        size += cost
    if batch:
        yield batch


def send_conversations(invoke: Callable[[dict[str, Any]], dict[str, Any]], project_id: str, source: Source, *,
                       rate: float, include_forgotten: bool = False, batch_size: int = BATCH_CONVERSATIONS,
                       progress: Progress | None = None, totals: Totals | None = None) -> Totals:
    """Send the conversations a batch at a time; what the function did not reach in one invocation goes in the
    next. Counts into `totals` as it goes (so an interrupted run still has them). Stops at the first error the
    function answers (an AdminError), whose message says what to do."""
    totals = totals if totals is not None else Totals()
    for where, why in source.invalid:
        totals.conversations += 1
        totals.invalid += 1
        totals.failures.append(f"{where}: not a valid conversation: {why}")
    limit = RateLimit(rate)
    per_batch = max(1, min(batch_size, int(rate) if rate > 0 else batch_size))
    for batch in batches(source.items, per_batch, BATCH_BYTES):
        while batch:
            limit.wait()
            event = {"action": "backfill.conversations", "project_id": project_id,
                     "conversations": [data for _, data in batch]}
            if include_forgotten:
                event["include_forgotten"] = True
            answer = invoke(event)
            results = answer.get("results") or []
            if not results:
                raise RuntimeError("the admin function handled none of the conversations sent")
            for (item, _), result in zip(batch, results, strict=False):
                totals.add(result)
                limit.spent(int(result.get("published") or 0))
                if progress is not None:
                    progress.advance(item.turns, f"{totals.conversations} conversations: {totals.published} jobs "
                                                 f"published, {totals.skipped} skipped, {totals.failed} failed",
                                     short=f"{totals.published} new · {totals.skipped} skipped · "
                                           f"{totals.failed} failed")
            batch = batch[len(results):]
    return totals


# ---------------------------------------------------------------- progress


class Progress:
    """A progress bar on a terminal (rich); elsewhere (a log, a pipe) a line at every tenth of the way."""

    def __init__(self, total: int, *, label: str, unit: str, stream=None):
        self.total, self.unit = total, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self._next_line = 0.1
        self._bar = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            # Narrow enough for an 80-column terminal: the label's first word, the bar, the count, a short status.
            self._bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(),
                            TextColumn(unit), TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                            console=Console(file=self.stream))
            self._task = self._bar.add_task(label.split()[0], total=total, status="")
            self._bar.start()
        else:
            print(f"{label}: {total:,} {unit}", file=self.stream, flush=True)

    def advance(self, amount: int, status: str, short: str | None = None) -> None:
        """`amount` more done; `status` says how it went (`short` on the bar, when given)."""
        self.done += amount
        if self._bar is not None:
            self._bar.update(self._task, advance=amount, status=short or status)
            return
        share = self.done / self.total if self.total else 1.0
        if share >= self._next_line or self.done >= self.total:
            width = 30
            filled = int(width * min(1.0, share))
            print(f"[{'#' * filled}{'.' * (width - filled)}] {share:4.0%}  {self.done:,}/{self.total:,} {self.unit}  "
                  f"{status}", file=self.stream, flush=True)
            while self._next_line <= share:
                self._next_line += 0.1

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# ---------------------------------------------------------------- the summary


def summary(totals: Totals, *, title: str, seconds: float, rate: float) -> str:
    pace = f"{totals.published / seconds:.1f} jobs/s published" if seconds > 0 else ""
    lines = [
        title,
        f"  conversations  {totals.conversations:,} ({totals.invalid:,} not valid)",
        f"  turns          {totals.turns:,}",
        f"  jobs           {totals.jobs:,}: {totals.published:,} published, {totals.skipped:,} skipped "
        f"({'published before, or as said below' if totals.notes else 'published before'}), {totals.failed:,} failed",
        f"  took           {seconds:.1f} s ({pace}; at most {rate:g}/s)" if rate > 0 else
        f"  took           {seconds:.1f} s ({pace})",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- narratives


@dataclass
class NarrativeTotals:
    users: int = 0
    queued: int = 0
    pending: int = 0
    current: int = 0


def queue_narratives(invoke: Callable[[dict[str, Any]], dict[str, Any]], project_id: str, *, min_memories: int,
                     rate: float, everyone: bool = False, stream=None) -> NarrativeTotals:
    """Ask for a narrative for each user with at least `min_memories` memories and none written since they last
    changed (`everyone`: for each such user), a page of users at a time, at most `rate` jobs a second; a user with
    a job pending already counts as pending."""
    totals = NarrativeTotals()
    limit = RateLimit(rate)
    page = max(1, min(200, int(rate) if rate > 0 else 200))
    progress: Progress | None = None
    after = None
    try:
        while True:
            limit.wait()
            event: dict[str, Any] = {"action": "backfill.narratives", "project_id": project_id,
                                     "min_memories": min_memories, "limit": page}
            if after:
                event["after_user_id"] = after
            if everyone:
                event["all"] = True
            answer = invoke(event)
            if progress is None:
                progress = Progress(int(answer.get("total") or 0), label="queueing narratives", unit="users",
                                    stream=stream)
            for name in ("users", "queued", "pending", "current"):
                setattr(totals, name, getattr(totals, name) + int(answer.get(name) or 0))
            limit.spent(int(answer.get("queued") or 0))
            progress.advance(int(answer.get("users") or 0), f"{totals.queued} queued, {totals.pending} pending, "
                                                            f"{totals.current} up to date")
            after = answer.get("next_after_user_id")
            if not after:
                return totals
    finally:
        if progress is not None:
            progress.close()
