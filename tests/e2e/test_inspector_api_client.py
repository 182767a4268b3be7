"""The inspector's API additions through the local stack (API Gateway, the authorizer, the memory API function) with
the Python client: users with counts, a user's jobs, a memory corrected and its history; and the page itself, served
without a key while every API route behind it still needs one."""

from __future__ import annotations

import time

import httpx
import pytest

from reverie_client import ReverieAPIError, ReverieClient
from tests.support.projects import new_project

pytestmark = pytest.mark.e2e


@pytest.fixture
def rv(stack):
    key = new_project(stack.clients.db, prefix="client")
    with ReverieClient(stack.base_url, key.key, sleep=lambda s: time.sleep(min(s, 0.2))) as rv:
        yield rv


def test_the_client_lists_users_follows_their_jobs_and_corrects_a_memory(rv):
    for user in ("ana", "bob", "cy"):
        rv.add_memories(user, f"{user} lives in Porto", infer=False)
    chat = rv.chat("ana", "s1", "I moved to Berlin last month.")
    job = rv.wait_for_job(chat["job_id"], timeout_s=60)
    assert job["status"] == "done"

    assert [u["user_id"] for u in rv.iter_users(page_size=2)] == ["ana", "bob", "cy"]
    page = rv.list_users(prefix="b")
    assert [u["user_id"] for u in page["users"]] == ["bob"] and page["next_cursor"] is None
    [ana] = rv.list_users(limit=1)["users"]
    assert ana["jobs"] == 1 and ana["memories"]["semantic"] >= 1 and ana["last_activity"]

    jobs = rv.user_jobs("ana", limit=5)
    assert [j["job_id"] for j in jobs["jobs"]] == [chat["job_id"]]
    assert jobs["jobs"][0]["tiers"] == job["tiers"] and jobs["jobs"][0]["created_at"]

    everything = list(rv.iter_memories("ana"))
    assert len(rv.list_memories("ana", include_superseded=True)["memories"]) >= len(everything)
    [berlin] = [m for m in everything if "Berlin" in m["text"] and m["tier"] == "semantic"]
    edited = rv.edit_memory(berlin["id"], "User lives in Berlin, in Neukölln")
    assert edited["id"] == berlin["id"] and edited["text"] == "User lives in Berlin, in Neukölln"
    events = rv.memory_history(berlin["id"])["events"]
    assert events[-1]["event"] == "UPDATE" and events[-1]["old_text"] == berlin["text"]
    with pytest.raises(ReverieAPIError) as refused:
        rv.edit_memory("00000000-0000-0000-0000-000000000000", "nothing")
    assert (refused.value.status, refused.value.code) == (404, "not_found")


def test_the_page_is_served_without_a_key_and_the_api_behind_it_is_not(stack):
    page = httpx.get(f"{stack.base_url}/ui", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "require-trusted-types-for 'script'" in page.headers["content-security-policy"]
    script = httpx.get(f"{stack.base_url}/ui/inspector.js", timeout=10)
    assert script.status_code == 200 and script.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{stack.base_url}/ui/nope.js", timeout=10).status_code == 404
    for path in ("/v1/users", "/v1/users/ana/jobs"):
        assert httpx.get(f"{stack.base_url}{path}", timeout=10).status_code == 401
    patch = httpx.patch(f"{stack.base_url}/v1/memories/00000000-0000-0000-0000-000000000000", json={"text": "x"},
                        timeout=10)
    assert patch.status_code == 401
