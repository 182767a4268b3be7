"""Lambda's SQS event source mapping, locally: partial batch responses, whole-batch failures, redrive to the DLQ.

A test handler (Powertools' FIFO batch processor, as the reflectors use) stands in for the semantic reflector.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict

import pytest
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response

from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

FUNCTION = "SemanticReflectorFunction"
MAX_RECEIVES = 5  # maxReceiveCount of the reflection queues in template.yaml


class Recorder:
    """A batch handler that fails the records it is told to, and remembers every call."""

    def __init__(self, failing: set[str], raise_first_batches: int = 0):
        self.failing = failing
        self.raise_first_batches = raise_first_batches
        self.processed: Counter[str] = Counter()
        self.receive_counts: dict[str, list[int]] = defaultdict(list)
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()

    def record(self, record) -> None:
        with self.lock:
            self.processed[record.body] += 1
        if record.body in self.failing:
            raise RuntimeError(f"cannot reflect {record.body}")

    def __call__(self, event, context):
        bodies = [r["body"] for r in event["Records"]]
        with self.lock:
            self.batches.append(bodies)
            for r in event["Records"]:
                self.receive_counts[r["body"]].append(int(r["attributes"]["ApproximateReceiveCount"]))
            if len(self.batches) <= self.raise_first_batches:
                raise RuntimeError("the whole batch fails")
        return process_partial_response(event=event, record_handler=self.record, context=context,
                                        processor=SqsFifoPartialProcessor(skip_group_on_error=True))


def send_as_one_batch(stack, entries: list[tuple[str, str]]) -> None:
    """(body, group) pairs sent while the poller waits, so they arrive in its next batch together."""
    sqs = stack.client("sqs")
    with stack.pollers[FUNCTION].paused():
        answer = sqs.send_message_batch(QueueUrl=stack.queue_url("SemanticQueue"), Entries=[
            {"Id": str(i), "MessageBody": body, "MessageGroupId": group, "MessageDeduplicationId": body}
            for i, (body, group) in enumerate(entries)
        ])
        assert not answer.get("Failed"), answer


def drain_dlq(stack, expected: int) -> list[dict]:
    sqs, url = stack.client("sqs"), stack.queue_url("SemanticDLQ")
    got: list[dict] = []

    def receive():
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                     MessageSystemAttributeNames=["All"]).get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return len(got) >= expected

    wait_for(receive, timeout_s=20, interval_s=0.2)
    return got


def queue_is_empty(stack) -> bool:
    attrs = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url("SemanticQueue"),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_failed_record_alone_comes_back_and_reaches_the_dlq_after_five_receives(stack):
    run = uuid.uuid4().hex[:8]
    bodies = [f"{run}-{i}" for i in range(5)]
    poison = bodies[2]
    handler = Recorder(failing={poison})

    with stack.override_handler(FUNCTION, handler):
        send_as_one_batch(stack, [(b, f"{b}-group") for b in bodies])  # a message group per record
        dead = drain_dlq(stack, expected=1)
        assert wait_for(lambda: queue_is_empty(stack))

    assert handler.batches[0] == bodies  # the failure was one record of a batch of five
    assert [m["Body"] for m in dead] == [poison]
    assert handler.receive_counts[poison] == list(range(1, MAX_RECEIVES + 1))
    assert all(batch == [poison] for batch in handler.batches[1:])  # it alone came back
    assert handler.processed[poison] == MAX_RECEIVES
    assert {b: handler.processed[b] for b in bodies if b != poison} == {b: 1 for b in bodies if b != poison}


def test_failed_record_holds_back_the_rest_of_its_message_group(stack):
    run = uuid.uuid4().hex[:8]
    first, poison, later = f"{run}-first", f"{run}-poison", f"{run}-later"
    handler = Recorder(failing={poison})

    with stack.override_handler(FUNCTION, handler):
        send_as_one_batch(stack, [(first, run), (poison, run), (later, run)])  # one user: one group
        dead = drain_dlq(stack, expected=2)
        assert wait_for(lambda: queue_is_empty(stack))

    assert handler.processed[first] == 1
    assert handler.processed[poison] == MAX_RECEIVES
    # FIFO order: what follows the failed job in its group never runs ahead of it, and goes to the DLQ with it
    assert handler.processed[later] == 0
    assert [m["Body"] for m in dead] == [poison, later]


def test_handler_exception_returns_the_whole_batch(stack):
    run = uuid.uuid4().hex[:8]
    bodies = [f"{run}-{i}" for i in range(3)]
    handler = Recorder(failing=set(), raise_first_batches=1)

    with stack.override_handler(FUNCTION, handler):
        send_as_one_batch(stack, [(b, f"{b}-group") for b in bodies])
        wait_for(lambda: all(handler.processed[b] == 1 for b in bodies))
        assert wait_for(lambda: queue_is_empty(stack))

    assert handler.batches[0] == bodies
    assert sorted(b for batch in handler.batches[1:] for b in batch) == bodies  # nothing was deleted
    assert all(handler.receive_counts[b] == [1, 2] for b in bodies)
