"""Lambda's SQS event source mapping, on this machine: one poller thread per queue trigger of the template.

A poller receives up to BatchSize messages, hands them to the function as Lambda's SQS event, deletes what
succeeded and gives back what failed. Redrive to the DLQ after maxReceiveCount is the queue's own doing
(moto moves a message when it is received once too often), exactly as in SQS.

One difference, on purpose: Lambda leaves a failed message invisible until the queue's VisibilityTimeout
runs out (720 s for the reflection queues), so a retry would take minutes here. Locally a failed message is
made visible again after `retry_delay_s` (a short backoff), so retries and the DLQ are seen in seconds.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from reverie_dev.local.functions import FunctionError

log = logging.getLogger("reverie.local")

MAX_RECEIVE = 10  # SQS's limit per ReceiveMessage


@dataclass
class BatchOutcome:
    received: int
    deleted: list[str]
    retried: list[str]
    whole_batch_failed: bool


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A message as Lambda's SQS event record shapes it."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {name: _attribute(value)
                              for name, value in (message.get("MessageAttributes") or {}).items()},
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update({
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    })
    return record


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    def b64(v: Any) -> str:
        return base64.b64encode(v).decode("ascii") if isinstance(v, bytes | bytearray) else str(v)

    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = b64(value["BinaryValue"])
    out["stringListValues"] = list(value.get("StringListValues") or [])
    out["binaryListValues"] = [b64(v) for v in value.get("BinaryListValues") or []]
    out["dataType"] = value.get("DataType", "String")
    return out


def failed_ids(answer: Any, batch_ids: list[str]) -> list[str] | None:
    """The messages a partial batch response gives back, or None when Lambda would fail the whole batch.

    As Lambda reads it: no answer, an empty answer or an empty/null batchItemFailures is a full success; an
    item without an itemIdentifier, an empty one, or one naming no message of the batch fails the batch.
    """
    if answer is None or answer == {} or answer == "":
        return []
    if not isinstance(answer, dict):
        return None
    failures = answer.get("batchItemFailures")
    if failures is None:
        return []
    if not isinstance(failures, list):
        return None
    known = set(batch_ids)
    out: list[str] = []
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(ident, str) or ident not in known:
            return None
        if ident not in out:
            out.append(ident)
    return out


class QueuePoller(threading.Thread):
    """Polls one queue for one function. One batch at a time: never two batches of a message group in flight."""

    def __init__(self, *, function: str, queue_url: str, queue_arn: str, batch_size: int,
                 report_batch_item_failures: bool, invoke: Callable[[str, Any], Any], sqs,
                 region: str = "us-east-1", retry_delay_s: float = 2.0, wait_time_s: int = 1):
        super().__init__(name=f"poller-{function}", daemon=True)
        self.function = function
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.batch_size = batch_size
        self.report_batch_item_failures = report_batch_item_failures
        self.invoke = invoke
        self.sqs = sqs
        self.region = region
        self.retry_delay_s = retry_delay_s
        self.wait_time_s = wait_time_s
        self.batches = 0
        self._stopping = threading.Event()
        self._pause_requested = threading.Event()
        self._parked = threading.Event()

    # ------------------------------------------------------------ control
    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        self._pause_requested.clear()
        if self.is_alive():
            self.join(timeout)

    def pause(self) -> None:
        """Stop receiving, and return once no receive or batch of this poller is under way."""
        self._parked.clear()
        self._pause_requested.set()
        if self.is_alive():
            self._parked.wait()

    def resume(self) -> None:
        self._pause_requested.clear()

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.pause()
        try:
            yield
        finally:
            self.resume()

    # ------------------------------------------------------------ the loop
    def run(self) -> None:
        while not self._stopping.is_set():
            if self._pause_requested.is_set():
                self._parked.set()
                self._stopping.wait(0.05)
                continue
            try:
                messages = self.receive()
            except Exception:
                if self._stopping.is_set():
                    break
                log.exception("receiving from %s failed; trying again", self.queue_url,
                              extra={"function": self.function})
                self._stopping.wait(1.0)
                continue
            if messages:
                try:
                    self.process(messages)
                except Exception:
                    # Whatever went wrong, the messages come back after their visibility timeout.
                    log.exception("a batch could not be settled", extra={"function": self.function})
        self._parked.set()

    def receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        wait = self.wait_time_s
        while len(messages) < self.batch_size:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(MAX_RECEIVE, self.batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages += got
            # Batches over 10 take more than one receive; the first one waits, the rest only top up.
            if not got or self.batch_size <= MAX_RECEIVE:
                break
            wait = 0
        return messages

    def process(self, messages: list[dict[str, Any]]) -> BatchOutcome:
        """One batch, settled as the event source mapping settles it."""
        self.batches += 1
        ids = [m["MessageId"] for m in messages]
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in messages]}
        failed: list[str] | None
        try:
            answer = self.invoke(self.function, event)
        except FunctionError:
            failed = None
        else:
            if self.report_batch_item_failures:
                failed = failed_ids(answer, ids)
                if failed is None:
                    log.error("malformed partial batch response; the whole batch comes back",
                              extra={"function": self.function})
            else:
                failed = []  # without ReportBatchItemFailures the answer is ignored: success deletes all
        whole = failed is None
        retry = set(ids) if failed is None else set(failed)
        deleted = [m for m in messages if m["MessageId"] not in retry]
        again = [m for m in messages if m["MessageId"] in retry]
        self._delete_messages(deleted)
        self._release_messages(again)
        if again:
            log.info("%d of %d messages come back%s", len(again), len(messages),
                     " (the batch failed)" if whole else "", extra={"function": self.function})
        return BatchOutcome(len(messages), [m["MessageId"] for m in deleted], [m["MessageId"] for m in again], whole)

    def _delete_messages(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), MAX_RECEIVE):
            chunk = messages[start:start + MAX_RECEIVE]
            answer = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in answer.get("Failed") or []:
                log.warning("delete failed: %s", failure.get("Message"), extra={"function": self.function})

    def _release_messages(self, messages: list[dict[str, Any]]) -> None:
        delay = max(0, round(self.retry_delay_s))
        for start in range(0, len(messages), MAX_RECEIVE):
            chunk = messages[start:start + MAX_RECEIVE]
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": delay}
                         for i, m in enumerate(chunk)],
            )
