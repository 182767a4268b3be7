"""Dead-letter queues end to end on moto: a failing job dies after five receives, is listed with its error,
shown, redriven exactly once, and then learned."""

from __future__ import annotations

import json

import pytest

from reverie.domain.tiers import Tier, TierStatus
from reverie.jobs import dlq
from reverie.jobs.status import job_status
from reverie.llm import LLMTimeout
from reverie_dev.cli import cmd_dlq, parser
from tests.support.clients import Swapped
from tests.support.llm import SpyLLM
from tests.support.reflect import PrivateQueue, job, memories_of, outcome

pytestmark = pytest.mark.integration


@pytest.fixture
def queue(clients):
    return PrivateQueue(clients.sqs)


def on(queue: PrivateQueue, clients, llm):
    return Swapped(clients, llm=llm, semantic_queue_url=queue.url, semantic_dlq_url=queue.dlq_url)


def source_bodies(queue: PrivateQueue) -> list[dict]:
    held = dlq.peek(queue.sqs, queue.url)
    return [json.loads(m["Body"]) for m in held]


def test_an_llm_timeout_ends_dead_in_the_dlq_after_five_receives_with_the_last_error_in_status(
        clients, project, queue, lambda_context):
    j = job(project.project_id, "u1", "I live in Porto.")
    queue.send(j)
    broken = on(queue, clients, SpyLLM(fail={"extract_semantic": LLMTimeout("timed out after 20s")}))

    for receive in range(1, 5):
        assert queue.drain_once(None, Tier.SEMANTIC, broken, lambda_context)["failed"] == 1
        status = job_status(clients, project.project_id, j.job_id)
        assert status.tiers[Tier.SEMANTIC].status == TierStatus.FAILED
        assert f"receive {receive} of 5" in status.tiers[Tier.SEMANTIC].error
    assert queue.drain_once(None, Tier.SEMANTIC, broken, lambda_context)["failed"] == 1  # the fifth receive
    assert queue.drain_once(None, Tier.SEMANTIC, broken, lambda_context)["received"] == 0  # SQS moved it

    assert queue.counts() == 0 and queue.counts(queue.dlq_url) == 1
    status = job_status(clients, project.project_id, j.job_id)
    assert status.status == TierStatus.DEAD
    assert "timed out after 20s" in status.tiers[Tier.SEMANTIC].error
    assert broken.llm.calls["extract_semantic"] == 5

    (parked,) = dlq.list_messages(broken, "semantic")
    assert (parked.job_id, parked.user_id) == (j.job_id, "u1")
    assert parked.receive_count >= 5  # reading a queue is a receive too, so the listing counts itself
    assert "timed out after 20s" in parked.last_error
    assert dlq.show(broken, "semantic", parked.message_id).body == j.model_dump_json()
    assert queue.counts(queue.dlq_url) == 1  # listing and showing consume nothing

    result = dlq.redrive(broken, "semantic")
    assert (result.method, result.moved) == ("receive-send-delete", 1)
    assert queue.counts(queue.dlq_url) == 0
    healthy = on(queue, clients, SpyLLM())
    queue.drain(Tier.SEMANTIC, healthy, lambda_context)

    assert outcome(clients.db, project.project_id, j.job_id, Tier.SEMANTIC)["status"] == "done"
    assert [m["text"] for m in memories_of(clients.db, project.project_id, "u1")] == ["User lives in Porto"]


def park(queue: PrivateQueue, body: str, group: str) -> None:
    queue.sqs.send_message(QueueUrl=queue.dlq_url, MessageBody=body, MessageGroupId=group,
                           MessageDeduplicationId=f"{group}-{body}")


def test_redrive_moves_every_message_once_and_in_order(clients, queue):
    for i in range(3):
        park(queue, json.dumps({"n": i}), "p:ana")
    park(queue, json.dumps({"n": 9}), "p:bob")
    c = on(queue, clients, SpyLLM())

    first = dlq.redrive(c, "semantic", limit=2)
    assert first.moved == 2 and queue.counts(queue.dlq_url) == 2
    rest = dlq.redrive(c, "semantic", limit=None)
    assert rest.moved == 2 and queue.counts(queue.dlq_url) == 0

    moved = dlq.peek(queue.sqs, queue.url)
    ana = [json.loads(m["Body"])["n"] for m in moved if m["Attributes"]["MessageGroupId"] == "p:ana"]
    assert ana == [0, 1, 2]
    assert sorted(json.loads(m["Body"])["n"] for m in moved) == [0, 1, 2, 9]


def test_a_redrive_interrupted_between_send_and_delete_does_not_duplicate(clients, queue):
    park(queue, json.dumps({"n": 1}), "p:ana")
    (message,) = queue.sqs.receive_message(QueueUrl=queue.dlq_url, AttributeNames=["All"],
                                           VisibilityTimeout=0)["Messages"]
    # The first attempt sent the message back and died before deleting it from the DLQ.
    queue.sqs.send_message(QueueUrl=queue.url, MessageBody=message["Body"], MessageGroupId="p:ana",
                           MessageDeduplicationId=dlq.dedup_id(message))

    dlq.redrive(on(queue, clients, SpyLLM()), "semantic")

    assert queue.counts(queue.dlq_url) == 0
    assert queue.counts() == 1


def test_the_dlq_command_lists_shows_and_redrives(clients, queue, capsys):
    park(queue, json.dumps({"job_id": "j-7", "project_id": "p", "user_id": "ana"}), "p:ana")
    c = on(queue, clients, SpyLLM())

    assert cmd_dlq(parser().parse_args(["dlq", "list", "--tier", "semantic"]), c) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("1 message(s) in the semantic dead-letter queue")
    assert "job=j-7" in listing and "user=ana" in listing and "group=p:ana" in listing
    message_id = listing.splitlines()[1].split()[0]

    assert cmd_dlq(parser().parse_args(["dlq", "show", "--tier", "semantic", message_id]), c) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["body"]["job_id"] == "j-7" and shown["group_id"] == "p:ana"

    assert cmd_dlq(parser().parse_args(["dlq", "show", "--tier", "semantic", "nope"]), c) == 1
    capsys.readouterr()
    assert cmd_dlq(parser().parse_args(["dlq", "redrive", "--tier", "semantic", "--limit", "5"]), c) == 0
    assert "moved 1 message(s)" in capsys.readouterr().out
    assert queue.counts(queue.dlq_url) == 0 and queue.counts() == 1


def test_a_refused_poison_message_is_listed_with_its_reason(clients, project, queue, lambda_context):
    queue.send_raw("{not json", f"{project.project_id}:u1")
    c = on(queue, clients, SpyLLM())
    queue.drain(Tier.SEMANTIC, c, lambda_context)

    (parked,) = dlq.list_messages(c, "semantic")
    assert parked.body == "{not json" and "not JSON" in parked.last_error
    assert queue.counts() == 0
