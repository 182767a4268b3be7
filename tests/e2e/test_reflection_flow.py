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
    with stack.clients.db.cursor() as cur:
        cur.execute("SELECT tier FROM processed_jobs WHERE project_id = %s AND job_id = %s",
                    (stack.project_id, job_id))
        return {row["tier"] for row in cur.fetchall()}


def processed_rows(stack, job_id: str) -> int:
    with stack.clients.db.cursor() as cur:
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
    if response.status_code == 503 and response.json().get("error", {}).get("code") == "unavailable":
        pytest.skip("the chat function answers 503 unavailable in this build")
    assert response.status_code == 200, response.text
    job_id = response.json()["job_id"]

    assert wait_for(lambda: processed_tiers(stack, job_id) == TIERS)
    assert processed_rows(stack, job_id) == 3
