"""POST /v1/turns through the chat function's handler: a turn the caller's own model answered, remembered as a chat
turn is (tier 1 at once, one reflection job through the outbox, published after the response), with no model call,
the chat's Idempotency-Key, limits and 4xx rules. And the same as the MCP tool add_turn."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from reverie import forget
from reverie.api import limits
from reverie.cache import job_markers, keys
from reverie.chat import turn as chat_turn
from reverie.domain.fields import MAX_MESSAGE_BYTES, utcnow
from reverie.domain.tiers import TIERS
from reverie.platform import after_response
from tests.support.chat import (
    deferred_work_held,
    drain_all_tiers,
    nothing_stored,
    parked,
    post_chat,
    post_turn,
    published,
    tier1,
)
from tests.support.clients import swapped
from tests.support.llm import SpyLLM

pytestmark = pytest.mark.integration

EXCHANGE = [{"role": "user", "content": "I moved to Berlin last month"},
            {"role": "assistant", "content": "Berlin! How are you settling in?"}]
TURN = {"user_id": "ana", "session_id": "s1", "messages": EXCHANGE}
# A fixed moment 15 s into its minute, so a test of the rate limits never sees its minute roll over.
NOW = 60.0 * 31_666_666 + 15


@pytest.fixture(autouse=True)
def _leave_the_queues_clean(clients, project):
    yield
    drain_all_tiers(clients, project.project_id)


# ---------------------------------------------------------------- remembered as a chat turn


def test_a_turn_is_kept_in_tier_1_and_learned_by_one_job_without_a_model_call(clients, project):
    p = project.project_id
    spy = SpyLLM()
    with swapped(clients, llm=spy):
        status, answer = post_turn(p, {**TURN, "metadata": {"app": "web"}})
    assert status == 202, answer
    assert set(answer) == {"turn_id", "job_id", "memory_saved"} and answer["memory_saved"] is True
    assert not spy.calls  # no recall's embedding, no reply: nothing of the model
    turns = tier1(clients, p, "ana", "s1")
    assert [(t.role, t.content) for t in turns] == [(m["role"], m["content"]) for m in EXCHANGE]
    assert [t.turn_id for t in turns] == [f"{answer['turn_id']}:0", f"{answer['turn_id']}:1"]
    for tier in TIERS:  # one job, fanned out to every tier by the topic
        (job,) = published(clients, p, tier)
        assert job.job_id == answer["job_id"] and (job.user_id, job.session_id) == ("ana", "s1")
        assert [t.model_dump() for t in job.turns] == [t.model_dump() for t in turns]
        assert job.metadata == {"app": "web"}
    assert job_markers.known(clients.valkey, p, answer["job_id"])["user_id"] == "ana"


def test_the_answer_comes_before_the_publish_with_the_job_already_durable_in_the_outbox(clients, project):
    p = project.project_id
    with deferred_work_held():
        status, answer = post_turn(p, TURN, wait_deferred=False)
        assert status == 202 and answer["memory_saved"] is True
        assert [j.job_id for j in parked(clients, p, "ana")] == [answer["job_id"]]
        assert len(tier1(clients, p, "ana", "s1")) == 2
        assert published(clients, p) == []
    assert after_response.drain(10)
    assert [j.job_id for j in published(clients, p)] == [answer["job_id"]]
    assert parked(clients, p, "ana") == []


def test_recorded_and_chat_turns_share_the_session_in_the_order_they_were_said(clients, project):
    p = project.project_id
    post_chat(p, {"user_id": "ana", "session_id": "s1", "message": "I am planning a trip"})
    post_turn(p, TURN)
    spy = SpyLLM()
    with swapped(clients, llm=spy):
        post_chat(p, {"user_id": "ana", "session_id": "s1", "message": "What did I just tell you?"})
    (prompt,) = spy.replies  # the chat's model sees the recorded turn among the recent ones
    assert [m["content"] for m in prompt[1:-1]][-2:] == [m["content"] for m in EXCHANGE]
    contents = [t.content for t in tier1(clients, p, "ana", "s1")]
    assert contents[0] == "I am planning a trip" and contents[2:4] == [m["content"] for m in EXCHANGE]


def test_a_turn_that_began_before_its_user_was_forgotten_keeps_nothing(clients, project, monkeypatch):
    p = project.project_id
    began = utcnow() - timedelta(seconds=5)
    forget.forget_user(clients, p, "ana")  # after the turn began, before it was saved
    monkeypatch.setattr(chat_turn, "utcnow", lambda: began)
    status, answer = post_turn(p, TURN)
    assert status == 202 and answer["memory_saved"] is False
    assert tier1(clients, p, "ana", "s1") == [] and published(clients, p) == []
    monkeypatch.undo()  # a turn that begins after the forget is the user coming back: it is kept
    status, answer = post_turn(p, TURN)
    assert answer["memory_saved"] is True and [j.job_id for j in published(clients, p)] == [answer["job_id"]]


# ---------------------------------------------------------------- Idempotency-Key, as the chat's


def test_a_retried_turn_gets_the_first_answer_and_is_kept_once(clients, project):
    p = project.project_id
    status, first = post_turn(p, TURN, key="turn-1")
    again_status, again = post_turn(p, TURN, key="turn-1")
    assert status == again_status == 202 and again == first
    assert [j.job_id for j in published(clients, p)] == [first["job_id"]]
    assert len(tier1(clients, p, "ana", "s1")) == 2


def test_a_key_reused_with_another_body_or_on_the_other_route_is_refused(clients, project):
    p = project.project_id
    post_turn(p, TURN, key="k-1")
    other = {**TURN, "messages": EXCHANGE[:1]}
    status, answer = post_turn(p, other, key="k-1")
    assert status == 422 and answer["error"]["code"] == "idempotency_key_reused"
    # A key is one request, whichever route: a chat's answer is not a turn's, nor the reverse.
    status, answer = post_chat(p, {"user_id": "ana", "session_id": "s1", "message": "hi"}, key="k-1")
    assert status == 422 and answer["error"]["code"] == "idempotency_key_reused"
    post_chat(p, {"user_id": "ana", "session_id": "s1", "message": "hi"}, key="k-2")
    status, answer = post_turn(p, TURN, key="k-2")
    assert status == 422 and answer["error"]["code"] == "idempotency_key_reused"
    assert len(published(clients, p)) == 2  # the first turn and the chat's


def test_an_invalid_idempotency_key_is_refused(clients, project):
    status, answer = post_turn(project.project_id, TURN, key="k" * 300)
    assert status == 400 and answer["error"]["code"] == "validation_error"
    assert nothing_stored(clients, project.project_id)


# ---------------------------------------------------------------- limits and bad input, as the chat's


def test_a_turn_counts_in_the_request_budget_and_not_in_the_model_budget(clients, project, monkeypatch):
    p = project.project_id
    monkeypatch.setattr(limits, "clock", lambda: NOW)
    with swapped(clients, rate_limit_per_minute=3, rate_limit_model_per_minute=1):
        assert post_chat(p, {"user_id": "bob", "session_id": "s1", "message": "hi"})[0] == 200
        assert post_chat(p, {"user_id": "bob", "session_id": "s1", "message": "again"})[0] == 429  # model budget
        assert post_turn(p, TURN)[0] == 202  # the third request: no model call, so still taken
        status, answer = post_turn(p, {**TURN, "user_id": "cy"})
    assert status == 429 and answer["error"]["code"] == "rate_limited"
    assert tier1(clients, p, "cy", "s1") == []


def _exchange(*contents: str) -> list[dict]:
    return [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]


EMOJI = "\U0001f600"  # 4 bytes of UTF-8; escaped in the job as a surrogate pair, 12 bytes
FULL_MESSAGE = EMOJI * (MAX_MESSAGE_BYTES // 4)


@pytest.mark.parametrize("body, status, code", [
    ({**TURN, "project": "someone-else"}, 400, "validation_error"),
    ({**TURN, "messages": []}, 400, "validation_error"),
    ({"user_id": "ana", "session_id": "s1"}, 400, "validation_error"),
    ({**TURN, "session_id": None}, 400, "validation_error"),
    ({**TURN, "messages": [{"role": "tool", "content": "42"}]}, 400, "validation_error"),
    ({**TURN, "messages": [{"content": "no role"}]}, 400, "validation_error"),
    ({**TURN, "messages": [{"role": "user", "content": "   "}]}, 400, "validation_error"),
    ({**TURN, "messages": [{"role": "user", "content": "x" * (MAX_MESSAGE_BYTES + 1)}]}, 400, "validation_error"),
    ({**TURN, "messages": [{"role": "user", "content": "a\x00b"}]}, 400, "validation_error"),
    ({**TURN, "messages": _exchange(*["hi"] * 51)}, 400, "validation_error"),
    ({**TURN, "user_id": "ana/../bob"}, 400, "validation_error"),
    ({**TURN, "metadata": {"k": "v" * 5000}}, 400, "validation_error"),
    ({**TURN, "extra": 1}, 400, "validation_error"),
    (json.dumps(TURN)[:-3], 400, "validation_error"),
    (json.dumps({**TURN, "messages": _exchange(*["x" * 30_000] * 9)}), 413, "payload_too_large"),
    (json.dumps({**TURN, "messages": _exchange(*[FULL_MESSAGE] * 3)}, ensure_ascii=False), 413, "payload_too_large"),
], ids=["project-in-body", "no-messages", "messages-missing", "no-session", "unknown-role", "no-role", "blank",
        "message-over-32KB", "NUL", "over-50-messages", "unsafe-user-id", "metadata-over-4KB", "unknown-field",
        "invalid-json", "body-over-256KB", "job-over-one-queue-message"])
def test_bad_input_is_refused_with_the_error_shape_and_nothing_is_stored(clients, project, body, status, code):
    got, answer = post_turn(project.project_id, body)
    assert got == status, answer
    assert set(answer) == {"error"} and answer["error"]["code"] == code and answer["error"]["message"]
    assert nothing_stored(clients, project.project_id)


def test_the_largest_exchange_one_job_holds_is_kept(clients, project):
    """Two full messages of 4-byte characters: a 64 KB body whose job, escaped, is three times that."""
    body = json.dumps({**TURN, "messages": _exchange(FULL_MESSAGE, FULL_MESSAGE)}, ensure_ascii=False)
    status, answer = post_turn(project.project_id, body)
    assert status == 202 and answer["memory_saved"] is True
    (job,) = published(clients, project.project_id)
    assert [t.content for t in job.turns] == [FULL_MESSAGE, FULL_MESSAGE]


def test_a_request_without_the_authorizers_project_is_401_and_nothing_is_stored(clients, project):
    status, answer = post_turn(None, TURN)
    assert status == 401 and answer["error"]["code"] == "unauthorized"
    assert nothing_stored(clients, project.project_id)


# ---------------------------------------------------------------- the MCP tool


def _mcp(api, tool: str, arguments: dict) -> dict:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    status, answer, _ = api("POST", "/mcp", body=body, headers={"accept": "application/json, text/event-stream",
                                                                "x-reverie-user": "ana"})
    assert status == 200, answer
    return answer["result"]["structuredContent"]


def test_the_mcp_tool_add_turn_keeps_the_turn_as_the_route_does(api, clients, project, monkeypatch):
    p = project.project_id
    monkeypatch.setattr(limits, "clock", lambda: NOW)
    with swapped(clients, rate_limit_model_per_minute=1):
        clients.valkey.set(keys.rate_limit(p, limits.MODEL, int(NOW // 60)), 5, ex=120)  # the model budget is spent
        answer = _mcp(api, "add_turn", {"session_id": "desk", "messages": EXCHANGE})
    assert answer["memory_saved"] is True, answer
    assert [t.content for t in tier1(clients, p, "ana", "desk")] == [m["content"] for m in EXCHANGE]
    assert after_response.drain(10)
    assert [j.job_id for j in published(clients, p)] == [answer["job_id"]]
    refused = _mcp(api, "add_turn", {"messages": [{"role": "user", "content": "   "}]})
    assert refused["error"]["code"] == "validation_error"
