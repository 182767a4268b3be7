"""The reflectors fed by real FIFO queues: the topic's fan-out, user batches, and one user's failure."""

from __future__ import annotations

import pytest

from reverie.cache import job_markers
from reverie.domain.tiers import TIERS, Tier, TierStatus
from reverie.jobs import delivery
from reverie.jobs.status import job_status
from reverie.llm import LLMUnavailable, OfflineLLM
from tests.support.clients import Swapped
from tests.support.llm import SpyLLM
from tests.support.reflect import PrivateQueue, job, memories_of, outcome

pytestmark = pytest.mark.integration


@pytest.fixture
def tier_queues(clients):
    """A private queue per tier, subscribed to the reflection topic for the length of one test."""
    queues = {tier: PrivateQueue(clients.sqs) for tier in TIERS}
    topic = clients.settings.reflection_topic_arn
    subscriptions = [
        clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q.queue_arn,
                              Attributes={"RawMessageDelivery": "true"})["SubscriptionArn"]
        for q in queues.values()
    ]
    yield queues
    for arn in subscriptions:
        clients.sns.unsubscribe(SubscriptionArn=arn)


def test_a_published_job_is_learned_by_all_three_reflectors(clients, project, tier_queues, lambda_context):
    j = job(project.project_id, "ana", "I live in Porto.", "Please always answer in Portuguese.")
    job_markers.remember(clients.valkey, j)
    delivery.send(clients.sns, clients.settings.reflection_topic_arn, j)
    assert job_status(clients, project.project_id, j.job_id).status == TierStatus.QUEUED

    reflecting = Swapped(clients, llm=SpyLLM())
    for tier, queue in tier_queues.items():
        queue.drain(tier, reflecting, lambda_context)

    status = job_status(clients, project.project_id, j.job_id)
    assert status.status == TierStatus.DONE
    assert {t: o.status for t, o in status.tiers.items()} == {t: TierStatus.DONE for t in TIERS}
    assert all(q.counts() == 0 for q in tier_queues.values())


def test_ten_jobs_of_one_user_in_the_queue_take_one_extraction_call(clients, project, lambda_context):
    queue = PrivateQueue(clients.sqs)
    batch = [job(project.project_id, "ana", f"I have a plant called Fern{i}.") for i in range(10)]
    for j in batch:
        queue.send(j)
    llm = SpyLLM()

    assert queue.drain_once(None, Tier.SEMANTIC, Swapped(clients, llm=llm), lambda_context)["deleted"] == 10
    assert llm.calls["extract_semantic"] == 1 and llm.calls["embed"] == 1
    assert all(outcome(clients.db, project.project_id, j.job_id, Tier.SEMANTIC)["status"] == "done" for j in batch)


def test_a_failing_user_stays_in_the_queue_in_order_while_others_are_learned(clients, project, lambda_context):
    queue = PrivateQueue(clients.sqs)

    def fail_for_bob(operation, messages):
        return LLMUnavailable("upstream 502", status=502) if "Oslo" in str(messages) else None

    reflecting = Swapped(clients, llm=OfflineLLM(fail_when=fail_for_bob))
    ana = [job(project.project_id, "ana", "I live in Porto."), job(project.project_id, "ana", "I work at Acme.")]
    bob = [job(project.project_id, "bob", "I live in Oslo."), job(project.project_id, "bob", "I work at Initech.")]
    for a, b in zip(ana, bob, strict=True):
        queue.send(a)
        queue.send(b)

    queue.drain_once(None, Tier.SEMANTIC, reflecting, lambda_context)

    assert {m["text"] for m in memories_of(clients.db, project.project_id, "ana")} == {
        "User lives in Porto", "User works at Acme"}
    left = [m for m in queue.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)["Messages"]]
    assert [m["Body"] for m in left] == [b.model_dump_json() for b in bob]
    assert all(outcome(clients.db, project.project_id, b.job_id, Tier.SEMANTIC)["status"] == "failed" for b in bob)
