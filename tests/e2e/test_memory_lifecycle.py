"""A user's memory from first fact to forget, through the local stack (API Gateway, authorizer, queues,
reflectors), over REST with the Python client and over MCP with the SDK's own client."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from reverie.store import ALL_PROJECTS
from reverie_client import ReverieAPIError, ReverieClient
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 60


@pytest.fixture
def rv(stack):
    with ReverieClient(stack.base_url, stack.api_key, sleep=lambda s: time.sleep(min(s, 0.2))) as rv:
        yield rv


def unique_user(kind: str) -> str:
    return f"e2e-{kind}-{secrets.token_hex(4)}"


def texts(results: list[dict[str, Any]]) -> list[str]:
    return [r["text"] for r in results]


def mentions(results: list[dict[str, Any]], word: str) -> bool:
    return any(word.lower() in r["text"].lower() for r in results)


# ---------------------------------------------------------------- "nothing of the user anywhere"


def valkey_mentions(stack, user_id: str) -> list[str]:
    """Every Valkey key whose name or value names the user, but the forget's own mark: it names the user for
    15 minutes so that work still in flight is dropped (checked here to expire), then goes."""
    valkey, found = stack.clients.valkey, []
    needle = user_id.encode()
    for key in valkey.scan_iter(match="*", count=1000):
        if key.startswith(b"forgotten:"):
            assert 0 < valkey.ttl(key) <= 15 * 60
            continue
        kind = valkey.type(key).decode()
        values: list[bytes] = []
        if kind == "string":
            values = [valkey.get(key) or b""]
        elif kind == "list":
            values = valkey.lrange(key, 0, -1)
        elif kind == "hash":
            values = [k + b"=" + v for k, v in valkey.hgetall(key).items()]
        elif kind == "set":
            values = list(valkey.smembers(key))
        elif kind == "zset":
            values = valkey.zrange(key, 0, -1)
        if needle in key or any(needle in v for v in values):
            found.append(key.decode())
    return found


def postgres_rows(stack, user_id: str) -> dict[str, int]:
    """Rows naming the user in every table that has a user_id column."""
    counts = {}
    with stack.clients.db.cursor(ALL_PROJECTS) as cur:
        cur.execute("SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
                    " AND column_name = 'user_id' ORDER BY table_name")
        tables = [r["table_name"] for r in cur.fetchall()]
        for table in tables:
            cur.execute(f"SELECT count(*) AS n FROM {table} WHERE user_id = %s", (user_id,))
            counts[table] = cur.fetchone()["n"]
    return counts


def assert_nothing_left(stack, rv: ReverieClient, user_id: str) -> None:
    assert valkey_mentions(stack, user_id) == []
    rows = postgres_rows(stack, user_id)
    # The tombstone is the one row kept on purpose: it is what drops the user's jobs still in flight.
    assert rows.pop("user_tombstones") == 1
    assert rows and set(rows.values()) == {0}, rows
    for query in ("Porto", "Berlin", "where do I live", "cello"):
        assert rv.search(user_id, query)["results"] == []
    assert rv.list_memories(user_id)["memories"] == []
    export = rv.export_user(user_id)
    assert [export[k] for k in ("memories", "events", "narratives", "jobs", "usage", "working_memory")] == [[]] * 6


def reflection_queues_idle(stack) -> bool:
    sqs = stack.clients.sqs
    for tier in ("episodic", "semantic", "procedural"):
        attrs = sqs.get_queue_attributes(
            QueueUrl=stack.clients.settings.queue_url(tier),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if int(attrs["ApproximateNumberOfMessages"]) or int(attrs["ApproximateNumberOfMessagesNotVisible"]):
            return False
    return True


# ---------------------------------------------------------------- REST


def test_add_search_ask_correct_and_forget_over_rest(stack, rv):
    user = unique_user("rest")

    job = rv.add_memories(user, "I live in Porto.")
    assert rv.wait_for_job(job["job_id"], timeout_s=JOB_TIMEOUT_S)["status"] == "done"
    found = rv.search(user, "where do I live?", tiers=["semantic"])["results"]
    assert mentions(found[:1], "Porto"), found
    porto_id = found[0]["id"]

    asked = rv.ask(user, "Where do I live?")
    assert "Porto" in asked["answer"] and porto_id in asked["citations"]

    before_move = datetime.now(UTC).isoformat()
    job = rv.add_memories(user, "I moved to Berlin.")
    assert rv.wait_for_job(job["job_id"], timeout_s=JOB_TIMEOUT_S)["status"] == "done"

    # The correction supersedes the old fact: it is no longer current, but it is not destroyed.
    now = rv.search(user, "where do I live?", tiers=["semantic"])["results"]
    assert mentions(now[:1], "Berlin") and not mentions(now, "Porto"), now
    old = rv.get_memory(porto_id)
    assert old["superseded_at"] and old["superseded_by"] == now[0]["id"]
    assert "SUPERSEDE" in [e["event"] for e in rv.memory_history(porto_id)["events"]]
    then = rv.search(user, "where do I live?", tiers=["semantic"], as_of=before_move)["results"]
    assert mentions(then[:1], "Porto"), then
    assert "Berlin" in rv.ask(user, "Where do I live now?")["answer"]
    deep = rv.deep_query(user, "Where have I lived?")
    assert porto_id in deep["citations"] and "semantic" in deep["tiers_used"]

    context = rv.context(user, query="where do I live", max_tokens=300)
    assert mentions(context["memories"], "Berlin") and context["tokens"] <= 300

    forget = rv.forget_user(user)
    assert rv.wait_for_job(forget["job_id"], timeout_s=JOB_TIMEOUT_S)["status"] == "done"
    assert_nothing_left(stack, rv, user)


def test_a_job_still_in_flight_when_the_user_is_forgotten_brings_nothing_back(stack, rv):
    user = unique_user("inflight")
    rv.add_memories(user, "I live in Porto and I play the cello.")
    rv.forget_user(user)
    wait_for(lambda: reflection_queues_idle(stack), timeout_s=JOB_TIMEOUT_S)
    assert_nothing_left(stack, rv, user)


def test_one_projects_key_cannot_see_or_forget_anothers_users(stack, rv):
    from reverie.api.auth import issue_key
    from reverie.store.projects import create_project

    other_project = "e2e-other-" + secrets.token_hex(3)
    create_project(stack.clients.db, other_project)
    other_key = issue_key(stack.clients.db, other_project).key
    user = unique_user("scope")
    [mine] = rv.add_memories(user, "I live in Porto.", infer=False)["memories"]

    with ReverieClient(stack.base_url, other_key) as theirs:
        assert theirs.search(user, "Porto")["results"] == []
        assert theirs.export_user(user)["memories"] == []
        for call in (theirs.get_memory, theirs.memory_history, theirs.delete_memory):
            with pytest.raises(ReverieAPIError) as refused:
                call(mine["id"])
            assert refused.value.status == 404
        theirs.forget_user(user)
    assert rv.get_memory(mine["id"])["text"] == "I live in Porto."
    rv.forget_user(user)


# ---------------------------------------------------------------- MCP


def mcp_call(stack, user_id: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tool call with the SDK's client, as a desktop client configured with a key and a user makes it."""

    async def main() -> Any:
        headers = {"Authorization": f"Bearer {stack.api_key}", "X-Reverie-User": user_id}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{stack.base_url}/mcp", http_client=http)) as client,
        ):
            return await client.call_tool(tool, arguments)

    result = anyio.run(main)
    payload = json.loads(result.content[0].text)
    assert not result.is_error, payload
    return payload


def test_add_search_ask_correct_and_forget_over_mcp(stack, rv):
    user = unique_user("mcp")

    added = mcp_call(stack, user, "add_memories", {"text": "I live in Porto."})
    assert rv.wait_for_job(added["job_id"], timeout_s=JOB_TIMEOUT_S)["status"] == "done"
    found = mcp_call(stack, user, "search_memory", {"query": "where do I live?", "tiers": ["semantic"]})["results"]
    assert mentions(found[:1], "Porto"), found
    porto_id = found[0]["id"]
    asked = mcp_call(stack, user, "ask_memory", {"question": "Where do I live?"})
    assert "Porto" in asked["answer"] and porto_id in asked["citations"]

    added = mcp_call(stack, user, "add_memories", {"text": "I moved to Berlin."})
    assert rv.wait_for_job(added["job_id"], timeout_s=JOB_TIMEOUT_S)["status"] == "done"
    now = mcp_call(stack, user, "search_memory", {"query": "where do I live?", "tiers": ["semantic"]})["results"]
    assert mentions(now[:1], "Berlin") and not mentions(now, "Porto"), now
    deep = mcp_call(stack, user, "deep_memory_query", {"query": "Where have I lived?"})
    assert porto_id in deep["citations"]
    context = mcp_call(stack, user, "get_context", {"query": "where do I live", "max_tokens": 300})
    assert mentions(context["memories"], "Berlin")

    listed = mcp_call(stack, user, "list_memories", {})["memories"]
    assert listed
    someone_else = mcp_call(stack, unique_user("mcp-other"), "delete_memories", {"memory_ids": [listed[0]["id"]]})
    assert someone_else == {"deleted": [], "not_found": [listed[0]["id"]]}
    deleted = mcp_call(stack, user, "delete_memories", {"memory_ids": [listed[0]["id"]]})
    assert deleted == {"deleted": [listed[0]["id"]], "not_found": []}

    rv.forget_user(user)
    assert mcp_call(stack, user, "search_memory", {"query": "Berlin"})["results"] == []
    assert mcp_call(stack, user, "list_memories", {})["memories"] == []
    assert_nothing_left(stack, rv, user)
