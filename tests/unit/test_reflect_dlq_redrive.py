"""Redrive through SQS's StartMessageMoveTask, where the service has it (moto does not; AWS does)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from reverie.jobs import dlq
from reverie.platform.config import Settings


class MoveTaskSQS:
    """Only what a move-task redrive calls; it records the request instead of moving anything."""

    def __init__(self):
        self.requests = []

    def get_queue_attributes(self, QueueUrl, AttributeNames):
        return {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:1:" + QueueUrl.rsplit("/", 1)[-1]}}

    def start_message_move_task(self, **request):
        self.requests.append(request)
        return {"TaskHandle": "task-1"}


def test_redrive_starts_a_move_task_back_to_the_source_queue():
    sqs = MoveTaskSQS()
    clients = SimpleNamespace(sqs=sqs, settings=Settings(semantic_queue_url="https://sqs/1/semantic.fifo",
                                                         semantic_dlq_url="https://sqs/1/semantic-dlq.fifo"))
    result = dlq.redrive(clients, "semantic")

    assert (result.method, result.task_handle) == ("move-task", "task-1")
    assert sqs.requests == [{"SourceArn": "arn:aws:sqs:us-east-1:1:semantic-dlq.fifo",
                             "DestinationArn": "arn:aws:sqs:us-east-1:1:semantic.fifo"}]


def test_an_unconfigured_queue_is_a_clear_error():
    clients = SimpleNamespace(sqs=MoveTaskSQS(), settings=Settings(narrative_queue_url=None, narrative_dlq_url=None))
    with pytest.raises(ValueError, match="NARRATIVE_DLQ_URL"):
        dlq.redrive(clients, "narrative")
