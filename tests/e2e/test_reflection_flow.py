"""A job through the topic, the three tier queues and the three reflectors, as the chat function sends it."""

from __future__ import annotations

import uuid

import pytest

from reverie.domain.memory import Turn
from reverie.jobs import delivery
from reverie.jobs.message import make_job
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TIERS = {"episodic", "semantic", "procedural"}


def processed_tiers(stack, job_id: str) -> set[str]:
    with stack.clients.db.cursor(stack.project_id) as cur:
        cur.execute("SELECT tier FROM processed_jobs WHERE project_id = %s AND job_id = %s",
                    (stack.project_id, job_id))
        return {row["tier"] for row in cur.fetchall()}


def processed_rows(stack, job_id: str) -> int:
    with stack.clients.db.cursor(stack.project_id) as cur:
        cur.execute("SELECT count(*) AS n FROM processed_jobs WHERE project_id = %s AND job_id = %s",
                    (stack.project_id, job_id))
        return cur.fetchone()["n"]


def test_published_job_is_processed_once_by_each_reflector(stack):
    user = "u-" + uuid.uuid4().hex[:8]
    job = make_job(project_id=stack.project_id, user_id=user, session_id="s1", turns=[
        Turn(role="user", content="I live in Porto and I always take the train."),
        Turn(role="assistant", content="Noted: Porto, and trains."),
    ])
    delivery.send(stack.clients.sns, stack.clients.settings.reflection_topic_arn, job)

    assert wait_for(lambda: processed_tiers(stack, job.job_id) == TIERS)
    assert processed_rows(stack, job.job_id) == 3


def test_chat_turn_flows_through_topic_queues_and_reflectors(stack, api):
    user = "u-" + uuid.uuid4().hex[:8]
    response = api.post("/v1/chat", json={"user_id": user, "session_id": "s1",
                                          "message": "My sister Ana lives in Lisbon."})
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]

    assert wait_for(lambda: processed_tiers(stack, job_id) == TIERS)
    assert processed_rows(stack, job_id) == 3


def test_a_job_the_topic_refuses_fails_with_its_reason_and_the_users_next_turn_is_learned(stack, api):
    user = "u-" + uuid.uuid4().hex[:8]
    # Over a queue message's limit (no door of ours lets one through; an older version's, say), parked first.
    refused = make_job(project_id=stack.project_id, user_id=user, session_id="s1",
                       turns=[Turn(role="user", content="x" * 30_000) for _ in range(10)])
    delivery.park(stack.clients.valkey, refused)
    response = api.post("/v1/chat", json={"user_id": user, "session_id": "s1", "message": "I live in Porto."})
    assert response.status_code == 200 and response.json()["memory_saved"] is True
    learned = response.json()["job_id"]

    assert wait_for(lambda: api.get(f"/v1/jobs/{learned}").json()["status"] == "done")
    status = api.get(f"/v1/jobs/{refused.job_id}").json()
    assert status["status"] == "failed"
    assert all(t["status"] == "failed" and "262144" in t["reason"] for t in status["tiers"].values())
    assert processed_rows(stack, refused.job_id) == 0
