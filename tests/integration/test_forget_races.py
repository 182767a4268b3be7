"""A forget that overtakes work in flight wins: a turn still being answered, a memory still being stored, a job
made before the forget, an answer remembered for an Idempotency-Key. Nothing of the user is written back."""

from __future__ import annotations

import threading
import time

import pytest

from reverie import forget
from reverie.api import memories as operations
from reverie.api.schemas import AddMemoriesRequest
from reverie.cache import keys, users
from reverie.domain.errors import UserForgotten
from reverie.domain.memory import Turn
from reverie.domain.tiers import Tier
from reverie.jobs import delivery
from reverie.jobs.message import make_job
from reverie.llm import OfflineLLM
from reverie.reflect.consumer import handle_batch
from tests.support.chat import post_chat, published, user_keys_left
from tests.support.clients import Swapped, swapped
from tests.support.llm import SpyLLM
from tests.support.reflect import event, job

pytestmark = pytest.mark.integration


def user_rows(clients, project_id: str, user_id: str) -> dict[str, int]:
    counts = {}
    with clients.db.cursor(project_id) as cur:
        for table in ("memories", "memory_words", "memory_events", "narratives", "processed_jobs", "held_jobs",
                      "llm_usage"):
            cur.execute(f"SELECT count(*) AS n FROM {table} WHERE project_id = %s AND user_id = %s",
                        (project_id, user_id))
            counts[table] = cur.fetchone()["n"]
    return counts


def test_a_turn_answered_after_its_user_was_forgotten_writes_nothing_back(clients, project):
    p = project.project_id
    gate = threading.Event()
    slow = SpyLLM(gate=gate)
    answers: dict = {}
    with swapped(clients, llm=slow):
        def answer():
            answers["status"], answers["body"] = post_chat(
                p, {"user_id": "ana", "session_id": "s1", "message": "My PIN is 4321"}, key="k-race")

        turn = threading.Thread(target=answer)
        turn.start()
        assert slow.entered.wait(10)  # the reply is being made
        forget.forget_user(clients, p, "ana")
        gate.set()
        turn.join(10)
    assert answers["status"] == 200 and answers["body"]["memory_saved"] is False
    time.sleep(0.2)
    assert user_keys_left(clients, p, "ana") == []
    assert published(clients, p) == []
    assert user_rows(clients, p, "ana") == dict.fromkeys(user_rows(clients, p, "ana"), 0)
    # A turn that begins after the forget is the user coming back: it is kept.
    status, body = post_chat(p, {"user_id": "ana", "session_id": "s1", "message": "hello again"})
    assert status == 200 and body["memory_saved"] is True
    assert [j.job_id for j in published(clients, p)] == [body["job_id"]]


def test_a_memory_stored_as_given_after_its_user_was_forgotten_is_refused(clients, project):
    p = project.project_id
    slow_embeddings = OfflineLLM(embed_delay_s=1.0)
    request = AddMemoriesRequest(user_id="ana", messages=[{"content": "My PIN is 4321"}], infer=False)
    outcome: dict = {}

    def store():
        try:
            operations.add_memories(Swapped(clients, llm=slow_embeddings), p, request)
        except UserForgotten as exc:
            outcome["refused"] = exc

    writer = threading.Thread(target=store)
    writer.start()
    time.sleep(0.3)  # the write is embedding its text
    forget.forget_user(clients, p, "ana")
    writer.join(10)
    assert outcome["refused"].status == 409 and outcome["refused"].code == "user_forgotten"
    assert user_rows(clients, p, "ana") == dict.fromkeys(user_rows(clients, p, "ana"), 0)


def test_a_job_made_before_the_forget_is_neither_held_nor_learned(clients, project, lambda_context):
    p = project.project_id
    early = job(p, "ana", "My PIN is 4321.")
    forget.forget_user(clients, p, "ana")
    for tier in Tier:
        reflecting = Swapped(clients, llm=SpyLLM(), reflect_window_jobs=20)
        assert handle_batch(tier, event(early), lambda_context, reflecting) == {"batchItemFailures": []}
    assert user_rows(clients, p, "ana") == dict.fromkeys(user_rows(clients, p, "ana"), 0)


def test_a_job_delivered_after_the_forget_leaves_no_marker_and_no_outbox(clients, project):
    p = project.project_id
    made = make_job(project_id=p, user_id="ana", session_id="s1", turns=[Turn(role="user", content="hi")])
    forget.forget_user(clients, p, "ana")
    assert delivery.deliver(clients, made).route == "forgotten"
    assert user_keys_left(clients, p, "ana") == []
    assert clients.valkey.get(keys.job_marker(p, made.job_id)) is None
    published(clients, p)  # it went to the topic first; the reflectors drop it (made before the forget)


def test_the_forget_mark_voids_only_work_begun_before_it(clients, project):
    p = project.project_id
    before = time.time()
    users.mark_forgotten(clients.valkey, p, "ana", time.time())
    after = time.time() + 0.001
    assert users.forgotten_since(clients.valkey, p, "ana", before)
    assert not users.forgotten_since(clients.valkey, p, "ana", after)
    marker, index, outbox = keys.job_marker(p, "j1"), keys.outbox_index_of(p, "ana"), keys.outbox(p, "ana")
    voided = users.UserWrites(clients.valkey, p, "ana", before)
    voided.sadd(keys.sessions(p, "ana"), "s1")
    voided.set(marker, "{}", ex=60)  # other slots: sent in the same round trip, undone when the mark voids the rest
    voided.zadd(index, {outbox: 1.0}, nx=True)
    assert voided.execute() is None and not clients.valkey.exists(keys.sessions(p, "ana"))
    assert not clients.valkey.exists(marker) and clients.valkey.zscore(index, outbox) is None
    kept = users.UserWrites(clients.valkey, p, "ana", after)
    kept.sadd(keys.sessions(p, "ana"), "s1")
    kept.set(marker, "{}", ex=60)
    kept.zadd(index, {outbox: 1.0}, nx=True)
    assert kept.execute() == [1] and clients.valkey.exists(keys.sessions(p, "ana"))
    assert clients.valkey.exists(marker) and clients.valkey.zscore(index, outbox) == 1.0
    with pytest.raises(ValueError, match="cannot be undone"):
        kept.sadd(keys.job_marker(p, "j2"), "x")  # a write to another slot must have an undo
    clients.valkey.delete(marker)
    clients.valkey.zrem(index, outbox)
    users.delete_user(clients.valkey, p, "ana")
