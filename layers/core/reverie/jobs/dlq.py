"""Dead-letter queues (episodic, semantic, procedural, narrative): list, show, redrive, and park a message.

Redrive uses SQS's StartMessageMoveTask where the service has it; elsewhere (moto, the local stack) it moves
messages itself: receive, send to the source queue with the same group and a deduplication id derived from
the DLQ message, then delete. A crash between send and delete re-sends with the same deduplication id,
which SQS drops; and a job delivered twice is still applied once (processed_jobs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from reverie.domain.tiers import TIERS
from reverie.store import ALL_PROJECTS, processed_jobs

QUEUES = (*(t.value for t in TIERS), "narrative")
LIST_LIMIT = 100
# Long enough to list or move a page of messages; they come back on their own if the command dies.
HOLD_S = 60


@dataclass
class Parked:
    message_id: str
    group_id: str
    receive_count: int
    first_received: datetime | None
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    message_attributes: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    project_id: str | None = None
    user_id: str | None = None
    last_error: str | None = None

    def summary(self) -> str:
        first = self.first_received.isoformat(timespec="seconds") if self.first_received else "-"
        error = (self.last_error or "-").replace("\n", " ")
        return (f"{self.message_id}  group={self.group_id}  receives={self.receive_count}  first={first}  "
                f"job={self.job_id or '-'}  user={self.user_id or '-'}  error={error[:120]}")

    def as_dict(self) -> dict[str, Any]:
        try:
            body: Any = json.loads(self.body)
        except ValueError:
            body = self.body
        return {"message_id": self.message_id, "group_id": self.group_id, "receive_count": self.receive_count,
                "first_received": self.first_received.isoformat() if self.first_received else None,
                "job_id": self.job_id, "project_id": self.project_id, "user_id": self.user_id,
                "last_error": self.last_error, "attributes": self.attributes,
                "message_attributes": self.message_attributes, "body": body}


def queue_urls(settings, name: str) -> tuple[str, str]:
    """(source queue, its DLQ) for a tier name or 'narrative'."""
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}: one of {', '.join(QUEUES)}")
    source, dlq = getattr(settings, f"{name}_queue_url", None), getattr(settings, f"{name}_dlq_url", None)
    if not source or not dlq:
        raise ValueError(f"the {name} queue or its DLQ is not configured ({name.upper()}_QUEUE_URL, "
                         f"{name.upper()}_DLQ_URL)")
    return source, dlq


def _parked(message: dict[str, Any]) -> Parked:
    attrs = message.get("Attributes") or {}
    first = attrs.get("ApproximateFirstReceiveTimestamp")
    parked = Parked(
        message_id=message["MessageId"], group_id=attrs.get("MessageGroupId", ""),
        receive_count=int(attrs.get("ApproximateReceiveCount") or 0),
        first_received=datetime.fromtimestamp(int(first) / 1000, UTC) if first else None,
        body=message.get("Body", ""), attributes=dict(attrs),
        message_attributes={k: v.get("StringValue", v.get("BinaryValue"))
                            for k, v in (message.get("MessageAttributes") or {}).items()},
    )
    try:
        data = json.loads(parked.body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        parked.job_id, parked.project_id, parked.user_id = (
            _str(data.get("job_id")), _str(data.get("project_id")), _str(data.get("user_id")))
    parked.last_error = parked.message_attributes.get("refused_reason")
    return parked


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _receive(sqs, url: str, count: int) -> list[dict[str, Any]]:
    return sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=max(1, min(10, count)), VisibilityTimeout=HOLD_S,
        AttributeNames=["All"], MessageAttributeNames=["All"],
    ).get("Messages", [])


def _release(sqs, url: str, messages: list[dict[str, Any]]) -> None:
    for m in messages:
        with contextlib.suppress(ClientError):  # else it becomes visible on its own when the hold runs out
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)


def peek(sqs, url: str, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
    """Read up to `limit` messages without consuming them: hold each page invisible while reading (so the
    next receive returns the next page), then give them all back. A FIFO queue returns at most one page of
    a group while that page is held: a listing shows the first ten messages of each user. Reading is a
    receive, so it adds one to each message's receive count (harmless in a DLQ, which has no redrive)."""
    held: list[dict[str, Any]] = []
    try:
        while len(held) < limit:
            page = _receive(sqs, url, limit - len(held))
            if not page:
                break
            held += page
    finally:
        _release(sqs, url, held)
    return held[:limit]


def _with_errors(clients, name: str, parked: list[Parked]) -> list[Parked]:
    if name == "narrative":
        return parked
    keys = [(p.project_id, p.job_id) for p in parked if p.project_id and p.job_id]
    if not keys:
        return parked
    # The parked jobs are of any project: the DLQ tools are the operator's.
    with clients.db.transaction(ALL_PROJECTS) as conn, conn.cursor() as cur:
        errors = processed_jobs.errors_of(cur, name, keys)
    for p in parked:
        p.last_error = errors.get((p.project_id, p.job_id)) or p.last_error
    return parked


def list_messages(clients, name: str, limit: int = LIST_LIMIT) -> list[Parked]:
    _, dlq = queue_urls(clients.settings, name)
    return _with_errors(clients, name, [_parked(m) for m in peek(clients.sqs, dlq, limit)])


def show(clients, name: str, message_id: str) -> Parked | None:
    return next((p for p in list_messages(clients, name, limit=10_000) if p.message_id == message_id), None)


@dataclass
class Redrive:
    method: str  # "move-task" or "receive-send-delete"
    moved: int = 0
    task_handle: str | None = None
    note: str | None = None


def park(clients, name: str, body: str, *, group_id: str, dedup_key: str, reason: str | None = None) -> None:
    """Put a message in a queue's DLQ directly: a refused job, or a held job out of attempts. The dedup id is
    stable for `dedup_key`, so parking the same thing twice leaves one message. A failed send raises."""
    _, dlq = queue_urls(clients.settings, name)
    send: dict[str, Any] = {
        "QueueUrl": dlq, "MessageBody": body or "(empty)", "MessageGroupId": group_id or "refused",
        "MessageDeduplicationId": "parked-" + hashlib.sha256(dedup_key.encode()).hexdigest()[:64],
    }
    if reason is not None:
        send["MessageAttributes"] = {"refused_reason": {"DataType": "String", "StringValue": reason[:1000]}}
    clients.sqs.send_message(**send)


def dedup_id(message: dict[str, Any]) -> str:
    """Stable for one DLQ message (a retried redrive is dropped by SQS), different for every new arrival in
    the DLQ (a message that fails again gets a new id when it is sent back, so its next redrive is not
    mistaken for a duplicate)."""
    return "redrive-" + hashlib.sha256(message["MessageId"].encode()).hexdigest()[:64]


def redrive(clients, name: str, limit: int | None = None) -> Redrive:
    source, dlq = queue_urls(clients.settings, name)
    sqs = clients.sqs
    if limit is None:
        try:
            arn = {u: sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
                   for u in (source, dlq)}
            task = sqs.start_message_move_task(SourceArn=arn[dlq], DestinationArn=arn[source])
            return Redrive("move-task", task_handle=task.get("TaskHandle"),
                           note="moving in the background; `reverie dlq list` shows what is left")
        except (ClientError, BotoCoreError, NotImplementedError) as exc:
            fallback = f"StartMessageMoveTask unavailable ({type(exc).__name__}); moved one by one"
    else:
        fallback = f"limited to {limit}; moved one by one"
    result = Redrive("receive-send-delete", note=fallback)
    while limit is None or result.moved < limit:
        page = _receive(sqs, dlq, 10 if limit is None else limit - result.moved)
        if not page:
            break
        for i, message in enumerate(page):
            try:
                _move(sqs, source, dlq, message)
            except Exception:
                _release(sqs, dlq, page[i:])  # keep FIFO order: nothing after a failed move goes first
                raise
            result.moved += 1
    return result


def _move(sqs, source: str, dlq: str, message: dict[str, Any]) -> None:
    attrs = message.get("Attributes") or {}
    send: dict[str, Any] = {"QueueUrl": source, "MessageBody": message["Body"]}
    if attrs.get("MessageGroupId"):
        send["MessageGroupId"] = attrs["MessageGroupId"]
        send["MessageDeduplicationId"] = dedup_id(message)
    copied = {}
    for key, value in (message.get("MessageAttributes") or {}).items():
        entry = {"DataType": value["DataType"]}
        for part in ("StringValue", "BinaryValue"):
            if part in value:
                entry[part] = value[part]
        copied[key] = entry
    if copied:
        send["MessageAttributes"] = copied
    sqs.send_message(**send)  # first send, then delete: a crash in between duplicates (deduplicated), never loses
    sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
