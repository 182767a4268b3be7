"""POST /v1/chat through the chat function's handler: the contract, tier 1, the one job, recall, bad input."""

from __future__ import annotations

import json
import threading

import pytest

from reverie.cache import job_markers, keys
from reverie.domain.fields import MAX_MESSAGE_BYTES
from reverie.domain.tiers import TIERS, Tier
from reverie.platform import after_response
from tests.support.chat import (
    deferred_work_held,
    drain_all_tiers,
    nothing_stored,
    parked,
    post_chat,
    published,
    tier1,
)
from tests.support.clients import swapped
from tests.support.llm import SpyLLM
from tests.support.memories import remember, write_narrative

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _leave_the_queues_clean(clients, project):
    yield
    drain_all_tiers(clients, project.project_id)


# ---------------------------------------------------------------- the contract


def test_a_turn_answers_with_the_contract_shape(clients, project):
    status, answer = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "Hello there"})
    assert status == 200, answer
    assert set(answer) >= {"reply", "session_id", "turn_id", "job_id", "context", "memory_saved"}
    assert answer["session_id"] == "s1" and answer["memory_saved"] is True and answer["reply"]
    assert answer["context"] == {"memories": [], "rules": [], "narrative": False, "pending": []}


def test_a_turn_appends_the_pair_to_tier_1_and_publishes_one_job_with_both_turns(clients, project):
    status, answer = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1",
                                                    "message": "I moved to Berlin", "metadata": {"app": "web"}})
    assert status == 200
    turns = tier1(clients, project.project_id, "ana", "s1")
    assert [(t.role, t.content) for t in turns] == [("user", "I moved to Berlin"), ("assistant", answer["reply"])]
    for tier in TIERS:  # the topic fans the one job out to every tier's queue
        (job,) = published(clients, project.project_id, tier)
        assert job.job_id == answer["job_id"] and job.user_id == "ana" and job.session_id == "s1"
        assert [t.content for t in job.turns] == ["I moved to Berlin", answer["reply"]]
        assert job.metadata == {"app": "web"}
    assert job_markers.known(clients.valkey, project.project_id, answer["job_id"])["user_id"] == "ana"


def test_the_reply_returns_before_the_publish_with_the_job_already_durable_in_the_outbox(clients, project):
    body = {"user_id": "ana", "session_id": "s1", "message": "I moved to Berlin"}
    with deferred_work_held():
        status, answer = post_chat(project.project_id, body, wait_deferred=False)
        assert status == 200 and answer["memory_saved"] is True
        assert [j.job_id for j in parked(clients, project.project_id, "ana")] == [answer["job_id"]]
        assert len(tier1(clients, project.project_id, "ana", "s1")) == 2
        assert job_markers.known(clients.valkey, project.project_id, answer["job_id"]) is not None
        for tier in TIERS:
            assert published(clients, project.project_id, tier) == []
    assert after_response.drain(10)
    for tier in TIERS:
        assert [j.job_id for j in published(clients, project.project_id, tier)] == [answer["job_id"]]
    assert parked(clients, project.project_id, "ana") == []
    assert not clients.valkey.exists(keys.outbox_claims(project.project_id, "ana"))


def test_tier_1_keeps_the_newest_turns_of_the_session_only(clients, project):
    with swapped(clients, working_memory_max_turns=4):
        for i in range(3):
            post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": f"message {i}"})
        post_chat(project.project_id, {"user_id": "ana", "session_id": "s2", "message": "other session"})
    turns = tier1(clients, project.project_id, "ana", "s1")
    assert [t.content for t in turns if t.role == "user"] == ["message 1", "message 2"]
    assert clients.valkey.ttl(keys.session(project.project_id, "ana", "s1")) > 0
    published(clients, project.project_id)


def test_the_model_sees_recent_turns_then_the_message(clients, project):
    post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "I am planning a trip"})
    recorder = SpyLLM()
    with swapped(clients, llm=recorder):
        post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "To Lisbon, in May"})
    (messages,) = recorder.replies
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "I am planning a trip" and messages[-1]["content"] == "To Lisbon, in May"
    published(clients, project.project_id)


def test_the_reply_uses_recalled_memories_and_the_answer_lists_their_ids(clients, project):
    sister = remember(clients, project.project_id, "ana", "Ana's sister Rosa lives in Lisbon")
    remember(clients, project.project_id, "ana", "Ana is learning to play the cello")
    rule = remember(clients, project.project_id, "ana", "Answer in short bullet points", Tier.PROCEDURAL)
    status, answer = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1",
                                                    "message": "Where does my sister Rosa live?"})
    assert status == 200
    assert "Rosa lives in Lisbon" in answer["reply"]
    used = {m["id"]: m for m in answer["context"]["memories"]}
    assert sister in used and used[sister]["tier"] == "semantic" and used[sister]["score"] > 0
    assert set(used[sister]) == {"id", "tier", "text", "score"}
    assert [r["id"] for r in answer["context"]["rules"]] == [rule]
    published(clients, project.project_id)


def test_a_narrative_is_used_fresh_or_stale(clients, project):
    """A stale one is used too (its regeneration is queued: tests/integration/test_narrative_hot_copy.py)."""
    write_narrative(clients, project.project_id, "ana", "Ana is a teacher in Porto.")
    write_narrative(clients, project.project_id, "ben", "Ben is a chef.", age_days=30)
    recorder = SpyLLM()
    with swapped(clients, llm=recorder):
        _, ana = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "hi"})
        _, ben = post_chat(project.project_id, {"user_id": "ben", "session_id": "s1", "message": "hi"})
    assert ana["context"]["narrative"] is True and ben["context"]["narrative"] is True
    assert "Ana is a teacher in Porto." in recorder.replies[0][0]["content"]
    assert "Ben is a chef." in recorder.replies[1][0]["content"]
    published(clients, project.project_id)


def test_another_users_or_projects_memories_are_never_recalled(clients, project):
    from reverie.api.auth import issue_key
    from reverie.store.projects import create_project

    other_project = project.project_id + "-other"
    create_project(clients.db, other_project)
    issue_key(clients.db, other_project)
    remember(clients, project.project_id, "ben", "Ben's sister Rosa lives in Lisbon")
    remember(clients, other_project, "ana", "Ana's sister Rosa lives in Lisbon")
    status, answer = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1",
                                                    "message": "Where does my sister Rosa live?"})
    assert status == 200 and answer["context"]["memories"] == []
    assert "Lisbon" not in answer["reply"]
    published(clients, project.project_id)


# ---------------------------------------------------------------- bad input: a clear 4xx, nothing stored


@pytest.mark.parametrize("body, status, code", [
    ({"user_id": "ana", "session_id": "s1", "message": "hi", "project": "someone-else"}, 400, "validation_error"),
    ({"user_id": "ana", "session_id": "s1", "message": "x" * (MAX_MESSAGE_BYTES + 1)}, 400, "validation_error"),
    ({"user_id": "ana", "session_id": "s1", "message": "hi", "metadata": {"k": "v" * 5000}}, 400, "validation_error"),
    ({"user_id": "ana/../bob", "session_id": "s1", "message": "hi"}, 400, "validation_error"),
    ({"user_id": "ana", "session_id": "s" * 200, "message": "hi"}, 400, "validation_error"),
    ({"user_id": "ana", "session_id": "s1", "message": "   "}, 400, "validation_error"),
    ({"user_id": "ana", "session_id": "s1"}, 400, "validation_error"),
    ({"user_id": "ana", "session_id": "s1", "message": "hi", "extra": 1}, 400, "validation_error"),
    ('{"user_id": "ana", "session_id": "s1", "message": ', 400, "validation_error"),
    (json.dumps({"user_id": "ana", "session_id": "s1", "message": "hi", "pad": "x" * 70_000}), 413,
     "payload_too_large"),
], ids=["project-in-body", "message-over-32KB", "metadata-over-4KB", "unsafe-user-id", "session-id-too-long",
        "blank-message", "no-message", "unknown-field", "invalid-json", "body-over-64KB"])
def test_bad_input_is_refused_with_the_error_shape_and_nothing_is_stored(clients, project, body, status, code):
    got, answer = post_chat(project.project_id, body)
    assert got == status, answer
    assert answer["error"]["code"] == code and answer["error"]["message"]
    assert nothing_stored(clients, project.project_id)


def test_a_request_without_the_authorizers_project_is_401_and_nothing_is_stored(clients, project):
    status, answer = post_chat(None, {"user_id": "ana", "session_id": "s1", "message": "hi"})
    assert status == 401 and answer["error"]["code"] == "unauthorized"
    assert nothing_stored(clients, project.project_id)


# ---------------------------------------------------------------- Idempotency-Key


def test_a_retried_request_gets_the_first_answer_and_publishes_no_second_job(clients, project):
    body = {"user_id": "ana", "session_id": "s1", "message": "I adopted a cat named Miso"}
    status, first = post_chat(project.project_id, body, key="retry-1")
    again_status, again = post_chat(project.project_id, body, key="retry-1")
    assert status == again_status == 200 and again == first
    assert [j.job_id for j in published(clients, project.project_id)] == [first["job_id"]]
    assert len(tier1(clients, project.project_id, "ana", "s1")) == 2


def test_the_same_key_in_two_projects_gives_each_its_own_answer(clients, project):
    from reverie.store.projects import create_project

    other = project.project_id + "-b"
    create_project(clients.db, other)
    body = {"user_id": "ana", "session_id": "s1", "message": "hello"}
    _, mine = post_chat(project.project_id, body, key="shared-key")
    _, theirs = post_chat(other, body, key="shared-key")
    assert mine["job_id"] != theirs["job_id"] and mine["turn_id"] != theirs["turn_id"]
    assert len(published(clients, project.project_id)) == 1 and len(published(clients, other)) == 1


def test_a_key_reused_with_another_body_is_refused(clients, project):
    post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "first"}, key="k-1")
    status, answer = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "second"},
                               key="k-1")
    assert status == 422 and answer["error"]["code"] == "idempotency_key_reused"
    assert len(published(clients, project.project_id)) == 1


def test_a_duplicate_while_the_first_is_in_flight_is_409(clients, project):
    gate = threading.Event()
    recorder = SpyLLM(gate=gate)
    body = {"user_id": "ana", "session_id": "s1", "message": "slow one"}
    results = {}
    with swapped(clients, llm=recorder):
        first = threading.Thread(target=lambda: results.setdefault("first", post_chat(project.project_id, body,
                                                                                       key="inflight")))
        first.start()
        assert recorder.entered.wait(10)
        status, answer = post_chat(project.project_id, body, key="inflight")
        gate.set()
        first.join(10)
    assert status == 409 and answer["error"]["code"] == "request_in_progress"
    assert results["first"][0] == 200
    assert len(published(clients, project.project_id)) == 1


def test_a_failed_turn_releases_its_key_so_a_retry_can_succeed(clients, project):
    from reverie.llm import LLMUnavailable

    body = {"user_id": "ana", "session_id": "s1", "message": "try me"}
    with swapped(clients, llm=SpyLLM(fail={"reply": LLMUnavailable("down")})):
        status, _ = post_chat(project.project_id, body, key="k-fail")
    assert status == 503
    status, answer = post_chat(project.project_id, body, key="k-fail")
    assert status == 200 and [j.job_id for j in published(clients, project.project_id)] == [answer["job_id"]]


def test_an_invalid_idempotency_key_is_refused(clients, project):
    status, answer = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "hi"},
                               key="k" * 300)
    assert status == 400 and answer["error"]["code"] == "validation_error"
    assert nothing_stored(clients, project.project_id)
