"""The outbox: parked jobs are published by a drain exactly once, in each user's order, and a drainer that died
mid-publish neither loses its job nor gets it applied twice."""

from __future__ import annotations

import pytest

from reverie.cache import job_markers, keys, outbox, users
from reverie.jobs import delivery
from reverie.ops import health
from tests.support.chat import claim_age, drain_all_tiers, parked, published
from tests.support.clients import swapped
from tests.support.reflect import job as a_job

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _leave_the_queues_clean(clients, project):
    yield
    drain_all_tiers(clients, project.project_id)

MISSING_TOPIC = "arn:aws:sns:us-east-1:123456789012:no-such-topic.fifo"


def park(clients, *parked_jobs) -> None:
    for job in parked_jobs:
        delivery.park(clients.valkey, job)


def test_the_health_probe_publishes_parked_jobs_once_and_empties_the_outbox(clients, project):
    first, second = a_job(project.project_id, "ana", "one"), a_job(project.project_id, "ana", "two")
    park(clients, first, second)
    assert outbox.stats(clients.valkey)["jobs"] >= 2
    report = health.probe(clients)
    assert report["outbox_drain"]["published"] >= 2
    assert [j.job_id for j in published(clients, project.project_id)] == [first.job_id, second.job_id]
    assert parked(clients, project.project_id, "ana") == []
    health.probe(clients)
    assert published(clients, project.project_id) == []
    index = keys.outbox_index_of(project.project_id, "ana")
    assert keys.outbox(project.project_id, "ana").encode() not in clients.valkey.zrange(index, 0, -1)


def test_while_the_topic_is_down_a_drain_keeps_every_job_and_its_order(clients, project):
    first, second = a_job(project.project_id, "ana", "one"), a_job(project.project_id, "ana", "two")
    park(clients, first, second)
    with swapped(clients, reflection_topic_arn=MISSING_TOPIC):
        result = delivery.drain_user(clients, project.project_id, "ana")
    assert (result.published, result.remaining, result.busy) == (0, 2, False)
    assert [j.job_id for j in parked(clients, project.project_id, "ana")] == [first.job_id, second.job_id]
    # the failed attempt released its claim, so the next drain publishes at once
    assert delivery.drain_user(clients, project.project_id, "ana").published == 2
    assert [j.job_id for j in published(clients, project.project_id)] == [first.job_id, second.job_id]


def test_a_job_another_drainer_is_publishing_is_left_to_it_and_later_jobs_wait(clients, project):
    first, second = a_job(project.project_id, "ana", "one"), a_job(project.project_id, "ana", "two")
    park(clients, first, second)
    claim_age(clients, first, 5)
    result = delivery.drain_user(clients, project.project_id, "ana")
    assert (result.published, result.remaining, result.busy) == (0, 2, True)
    assert published(clients, project.project_id) == []


def test_a_drainer_that_died_after_publishing_within_the_dedup_window_causes_no_second_delivery(clients, project):
    job = a_job(project.project_id, "ana", "I live in Porto")
    park(clients, job)
    delivery.send(clients.sns, clients.settings.reflection_topic_arn, job)  # the dead drainer's publish went out
    claim_age(clients, job, outbox.CLAIM_LEASE_S + 30)  # ... but it died before removing the job
    result = delivery.drain_user(clients, project.project_id, "ana")
    assert result.published == 1  # republished: SNS FIFO drops it by its dedup id, the job id
    assert [j.job_id for j in published(clients, project.project_id)] == [job.job_id]
    assert parked(clients, project.project_id, "ana") == []


def test_a_drainer_that_died_long_ago_is_not_republished_once_a_tier_has_processed_the_job(clients, project):
    job = a_job(project.project_id, "ana", "I live in Porto")
    park(clients, job)
    claim_age(clients, job, outbox.SNS_DEDUP_WINDOW_S + 60)
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO processed_jobs (job_id, tier, project_id, user_id, status) VALUES (%s, 'semantic',"
                    " %s, 'ana', 'done')", (job.job_id, project.project_id))
    result = delivery.drain_user(clients, project.project_id, "ana")
    assert (result.published, result.dropped, result.remaining) == (0, 1, 0)
    assert published(clients, project.project_id) == []
    assert parked(clients, project.project_id, "ana") == []


def test_a_drainer_that_died_long_ago_before_anything_was_processed_is_republished(clients, project):
    job = a_job(project.project_id, "ana", "I live in Porto")
    park(clients, job)
    claim_age(clients, job, outbox.SNS_DEDUP_WINDOW_S + 60)
    result = delivery.drain_user(clients, project.project_id, "ana")
    assert (result.published, result.dropped) == (1, 0)
    assert [j.job_id for j in published(clients, project.project_id)] == [job.job_id]


def test_a_park_and_a_publish_share_one_job_id_so_draining_after_a_direct_publish_adds_nothing(clients, project):
    job = a_job(project.project_id, "ana", "I live in Porto")
    with swapped(clients, reflection_topic_arn=MISSING_TOPIC):
        delivered = delivery.deliver(clients, job)
    assert (delivered.saved, delivered.route) == (True, "outbox")
    assert job_markers.known(clients.valkey, project.project_id, job.job_id) is not None  # status can say "queued"
    assert delivery.deliver(clients, a_job(project.project_id, "ana", "next")).drained == 1
    assert [j.turns[0].content for j in published(clients, project.project_id)] == ["I live in Porto", "next"]


def test_forgetting_a_user_drops_their_parked_jobs_only(clients, project):
    park(clients, a_job(project.project_id, "ana", "I live in Porto"),
         a_job(project.project_id, "ana:bob", "I live in Porto"))
    assert users.delete_user(clients.valkey, project.project_id, "ana")["user_keys"] >= 1
    assert parked(clients, project.project_id, "ana") == []
    assert len(parked(clients, project.project_id, "ana:bob")) == 1
    listed = {key for user in ("ana", "ana:bob")
              for key in clients.valkey.zrange(keys.outbox_index_of(project.project_id, user), 0, -1)}
    assert keys.outbox(project.project_id, "ana").encode() not in listed
    assert keys.outbox(project.project_id, "ana:bob").encode() in listed
    delivery.drain_user(clients, project.project_id, "ana:bob")
    published(clients, project.project_id)
