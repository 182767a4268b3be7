"""Rate limits per project, counted in the real (cluster-mode) Valkey: a request budget for every route and a
tighter one for the routes that spend model calls, both functions and the MCP tools included. Over a budget: 429
with Retry-After in the error shape, and nothing done. Without Valkey: let through, logged and counted."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from reverie.api import limits
from reverie.cache import keys, rate_limits
from reverie.platform.metric_names import Metric
from reverie_dev.local.context import LambdaContext
from tests.support.api import Api, nothing_stored
from tests.support.chat import chat_event, drain_reflection_jobs, emitted_metrics, post_chat
from tests.support.clients import swapped
from tests.support.functions import load_function
from tests.support.memories import remember

pytestmark = pytest.mark.integration

# A fixed moment 15 s into its minute (45 s left), so a test never sees its minute roll over.
NOW = 60.0 * 31_666_666 + 15


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(limits, "clock", lambda: NOW)


def limited(clients, *, requests: int = 1000, model: int = 1000):
    return swapped(clients, rate_limit_per_minute=requests, rate_limit_model_per_minute=model)


def assert_rate_limited(status, body, headers):
    assert status == 429, body
    assert set(body) == {"error"} and body["error"]["code"] == "rate_limited" and body["error"]["message"]
    assert headers["retry-after"] == "45"  # the seconds left of the minute


ASK = {"user_id": "ana", "question": "Where do I live?"}


def test_past_the_request_budget_every_route_answers_429_with_retry_after(api, clients):
    with limited(clients, requests=3):
        for _ in range(3):
            assert api("GET", "/v1/memories", query={"user_id": "ana"})[0] == 200
        assert_rate_limited(*api("GET", "/v1/memories", query={"user_id": "ana"}))
        assert_rate_limited(*api("GET", "/v1/status"))
        assert_rate_limited(*api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "x"}))


def test_a_project_over_its_budget_leaves_other_projects_theirs(api, other_api, clients):
    with limited(clients, requests=2):
        for _ in range(2):
            assert api("GET", "/v1/status")[0] == 200
        assert_rate_limited(*api("GET", "/v1/status"))
        assert other_api("GET", "/v1/status")[0] == 200


def test_the_next_minute_starts_a_new_budget(api, clients, monkeypatch):
    with limited(clients, requests=1):
        assert api("GET", "/v1/status")[0] == 200
        assert_rate_limited(*api("GET", "/v1/status"))
        monkeypatch.setattr(limits, "clock", lambda: NOW + 45)
        assert api("GET", "/v1/status")[0] == 200


def test_routes_that_spend_model_calls_have_the_tighter_budget(api, clients):
    remember(clients, api.project.project_id, "ana", "User lives in Porto")
    with limited(clients, requests=100, model=2):
        assert api("POST", "/v1/memories/ask", body=ASK)[0] == 200
        assert api("POST", "/v1/memories/deep-query", body={"user_id": "ana", "query": "Where?"})[0] == 200
        assert_rate_limited(*api("POST", "/v1/memories/ask", body=ASK))
        assert_rate_limited(*api("POST", "/v1/users/ana/narrative/regenerate"))
        learn = {"user_id": "ana", "messages": [{"content": "I moved to Berlin"}]}
        assert_rate_limited(*api("POST", "/v1/memories", body=learn))  # infer=true by default
        # The rest of the API still answers: storing as given, search, listing.
        assert api("POST", "/v1/memories", body={**learn, "infer": False})[0] == 201
        assert api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "Berlin"})[0] == 200
        assert api("GET", "/v1/memories", query={"user_id": "ana"})[0] == 200


def test_a_refused_request_spends_nothing_and_stores_nothing(api, clients):
    with limited(clients, requests=100, model=1):
        learn = {"user_id": "bob", "messages": [{"content": "I live in Porto"}]}
        assert api("POST", "/v1/memories", body={**learn, "messages": []})[0] == 400  # invalid: not counted
        assert api("POST", "/v1/memories", body=learn)[0] == 202
        assert_rate_limited(*api("POST", "/v1/memories", body={**learn, "user_id": "ana"}))
    assert nothing_stored(api, clients, "ana")


def test_chat_counts_in_the_model_budget_and_a_refused_turn_stores_nothing(api, clients):
    project_id = api.project.project_id
    turn = {"user_id": "ana", "session_id": "s1", "message": "I live in Porto"}
    with limited(clients, requests=100, model=1):
        assert post_chat(project_id, {**turn, "user_id": "bob"})[0] == 200
        status, body = post_chat(project_id, turn)
        assert status == 429 and body["error"]["code"] == "rate_limited", body
    assert nothing_stored(api, clients, "ana")


def test_the_chat_answers_429_with_retry_after(clients, project):
    turn = {"user_id": "ana", "session_id": "s1", "message": "Hello"}
    with limited(clients, requests=1):
        handler = load_function("ChatFunction")
        assert handler(chat_event(project.project_id, turn), LambdaContext())["statusCode"] == 200
        answer = handler(chat_event(project.project_id, turn), LambdaContext())
    assert answer["statusCode"] == 429 and answer["headers"]["Retry-After"] == "45"
    drain_reflection_jobs(clients, project.project_id)


def _mcp(api: Api, tool: str, arguments: dict) -> dict:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    status, answer, _ = api("POST", "/mcp", body=body, headers={"accept": "application/json, text/event-stream",
                                                                "x-reverie-user": "ana"})
    assert status == 200, answer
    return answer["result"]["structuredContent"]


def test_mcp_tools_that_spend_model_calls_count_in_the_model_budget(api, clients):
    remember(clients, api.project.project_id, "ana", "User lives in Porto")
    with limited(clients, requests=100, model=1):
        assert "answer" in _mcp(api, "ask_memory", {"question": "Where do I live?"})
        refused = _mcp(api, "deep_memory_query", {"query": "Where do I live?"})
        assert refused["error"]["code"] == "rate_limited" and "retry in 45 s" in refused["error"]["message"]
        assert _mcp(api, "add_memories", {"text": "I like tea"})["error"]["code"] == "rate_limited"
        assert _mcp(api, "add_memories", {"text": "I like tea", "infer": False})["memories"]
        assert _mcp(api, "search_memory", {"query": "tea"})["results"]


def test_mcp_requests_count_in_the_request_budget(api, clients):
    with limited(clients, requests=1):
        assert _mcp(api, "list_memories", {})["memories"] == []
        status, body, headers = api("POST", "/mcp", body={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                                    headers={"accept": "application/json, text/event-stream"})
    assert_rate_limited(status, body, headers)


def test_without_valkey_requests_go_through_logged_and_counted(api, clients, capsys, caplog, monkeypatch):
    monkeypatch.setattr(limits, "_unchecked_until", type(limits._unchecked_until)())
    with limited(clients, requests=1, model=1), swapped(clients, valkey_down=True):
        for _ in range(3):
            assert api("GET", "/v1/memories", query={"user_id": "ana"})[0] == 200
    out = capsys.readouterr().out
    assert "rate limit not checked" in caplog.text
    # Valkey is asked once, then not again for a while: no connection timeout paid on every request.
    assert emitted_metrics(out).get(Metric.RATE_LIMIT_UNCHECKED) == 1


def test_the_counters_are_one_key_per_project_budget_and_window_and_expire(clients):
    """Every command names one key, so the cluster never sees a command across slots; the key goes away."""
    counted = rate_limits.count(clients.valkey, "p:1", ["requests", "model"], window_s=60, now=NOW)
    assert counted.counts == [1, 1] and counted.resets_in_s == 45
    again = rate_limits.count(clients.valkey, "p:1", ["model"], window_s=60, now=NOW + 1)
    assert again.counts == [2]
    later = rate_limits.count(clients.valkey, "p:1", ["model"], window_s=60, now=NOW + 45)
    assert later.counts == [1] and later.resets_in_s == 60
    key = keys.rate_limit("p:1", "model", int(NOW // 60))
    assert key == f"rate:p%3A1:model:{int(NOW // 60)}"
    assert 0 < clients.valkey.ttl(key) <= 120
    assert key_slot(key.encode()) != key_slot(keys.rate_limit("p:1", "requests", int(NOW // 60)).encode())
