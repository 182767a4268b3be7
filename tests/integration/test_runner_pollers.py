"""The local SQS event source mapping against moto: the records Lambda builds, and how a batch is settled."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from reverie_dev.local.functions import FunctionError
from reverie_dev.local.pollers import QueuePoller, failed_ids

pytestmark = pytest.mark.integration


@pytest.fixture
def queue(engines):
    """A FIFO queue of its own, with a DLQ after 2 receives, shaped like the reflection queues."""
    sqs = engines.client("sqs")
    name = "t-" + uuid.uuid4().hex[:10]
    dlq = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={
        "FifoQueue": "true", "VisibilityTimeout": "720",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn, dlq


def poller(queue, answer, *, report=True, retry_delay_s=0.0):
    sqs, url, arn, _ = queue
    events = []

    def invoke(function, event):
        events.append(event)
        if isinstance(answer, Exception):
            raise FunctionError(function, type(answer).__name__, str(answer))
        return answer(event) if callable(answer) else answer

    p = QueuePoller(function="Fn", queue_url=url, queue_arn=arn, batch_size=10, report_batch_item_failures=report,
                    invoke=invoke, sqs=sqs, retry_delay_s=retry_delay_s, wait_time_s=0)
    return p, events


def send(queue, *bodies: str, group: str | None = None) -> None:
    sqs, url, _, _ = queue
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group or body, MessageDeduplicationId=body,
                         MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}})


def counts(queue) -> tuple[int, int]:
    sqs, url, _, _ = queue
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_records_have_the_shape_lambda_gives_them(queue):
    send(queue, "a")
    p, events = poller(queue, None)
    p.process(p.receive())
    record = events[0]["Records"][0]
    assert record["body"] == "a"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue[2]
    assert record["awsRegion"] == "us-east-1"
    assert record["md5OfBody"]
    assert record["messageAttributes"]["kind"] == {"stringValue": "test", "stringListValues": [],
                                                   "binaryListValues": [], "dataType": "String"}
    attributes = record["attributes"]
    assert attributes["ApproximateReceiveCount"] == "1"
    assert attributes["MessageGroupId"] == "a"
    assert attributes["MessageDeduplicationId"] == "a"
    for key in ("SequenceNumber", "SentTimestamp", "ApproximateFirstReceiveTimestamp", "SenderId"):
        assert key in attributes
    assert counts(queue) == (0, 0)


def test_reported_failures_come_back_and_successes_are_deleted(queue):
    send(queue, "ok", "bad")
    p, _ = poller(queue, lambda event: {"batchItemFailures": [
        {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "bad"]})
    outcome = p.process(p.receive())
    assert (len(outcome.deleted), len(outcome.retried), outcome.whole_batch_failed) == (1, 1, False)
    again = p.receive()
    assert [m["Body"] for m in again] == ["bad"]


@pytest.mark.parametrize("answer", [
    {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]},
    {"batchItemFailures": [{"itemIdentifier": ""}]},
    {"batchItemFailures": [{"itemIdentifier": None}]},
    {"batchItemFailures": [{"id": "wrong key"}]},
    {"batchItemFailures": "all"},
    ["not", "an", "object"],
    FunctionError("Fn", "RuntimeError", "boom"),
])
def test_exception_or_malformed_partial_response_fails_the_whole_batch(queue, answer):
    send(queue, "a", "b")
    p, _ = poller(queue, answer)
    outcome = p.process(p.receive())
    assert outcome.whole_batch_failed and outcome.deleted == []
    assert sorted(m["Body"] for m in p.receive()) == ["a", "b"]


def test_without_report_batch_item_failures_the_answer_is_ignored(queue):
    send(queue, "a", "b")
    p, _ = poller(queue, lambda event: {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]},
                  report=False)
    outcome = p.process(p.receive())
    assert len(outcome.deleted) == 2
    assert counts(queue) == (0, 0)


def test_failed_message_stays_invisible_for_the_retry_delay(queue):
    send(queue, "a")
    p, _ = poller(queue, RuntimeError("boom"), retry_delay_s=60)
    p.process(p.receive())
    assert counts(queue) == (0, 1)
    assert p.receive() == []


def test_message_received_too_often_is_moved_to_the_dlq_by_the_queue(queue):
    sqs, _, _, dlq = queue
    send(queue, "poison")
    p, events = poller(queue, RuntimeError("boom"))
    for _ in range(4):
        messages = p.receive()
        if messages:
            p.process(messages)
    assert len(events) == 2  # maxReceiveCount
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == ["poison"]


def test_paused_poller_receives_nothing_until_resumed(queue):
    p, events = poller(queue, None)
    p.wait_time_s = 1
    p.start()
    try:
        with p.paused():
            send(queue, "a")
            assert counts(queue) == (1, 0)
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r["body"] for r in events[0]["Records"]] == ["a"]
    finally:
        p.stop(timeout=5)
    assert not p.is_alive()


@pytest.mark.parametrize(("answer", "expected"), [
    (None, []), ({}, []), ("", []), ({"batchItemFailures": None}, []), ({"batchItemFailures": []}, []),
    ({"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m2"}]}, ["m2"]),
])
def test_partial_responses_lambda_reads_as_success_or_as_named_failures(answer, expected):
    assert failed_ids(answer, ["m1", "m2"]) == expected
