"""Read your own writes through the local stack, with the deployed reflection windows: what is said in one session
is in the next session's context at once, marked pending, and once its window closes it is there once, learned."""

from __future__ import annotations

import time
import uuid

import pytest

from reverie_dev.local.template import Template
from tests.support.clients import swapped
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def deployed_windows() -> dict[str, int]:
    """The reflection window as template.yaml deploys it (the local stack's default is a window of one job)."""
    parameters = Template().parameters
    return {"reflect_window_jobs": int(parameters["ReflectWindowJobs"]),
            "reflect_window_s": int(parameters["ReflectWindowSeconds"]),
            "reflect_quiet_s": int(parameters["ReflectQuietSeconds"])}


def held(stack, user: str) -> set[tuple[str, str]]:
    """(tier, job id) of each job the tiers' windows hold for the user."""
    with stack.clients.db.cursor(stack.project_id) as cur:
        cur.execute("SELECT tier, job_id FROM held_jobs WHERE project_id = %s AND user_id = %s",
                    (stack.project_id, user))
        return {(row["tier"], row["job_id"]) for row in cur.fetchall()}


def fall_quiet(stack, user: str, seconds: int) -> None:
    """As if the user had said nothing for `seconds` (instead of waiting that long)."""
    with stack.clients.db.transaction(stack.project_id) as conn, conn.cursor() as cur:
        cur.execute("UPDATE held_jobs SET held_at = held_at - make_interval(secs => %s)"
                    " WHERE project_id = %s AND user_id = %s", (seconds, stack.project_id, user))


def test_a_fact_said_in_session_a_is_pending_in_session_b_within_a_second_then_learned_once(stack, api):
    user = "u-" + uuid.uuid4().hex[:8]
    windows = deployed_windows()
    assert windows == {"reflect_window_jobs": 20, "reflect_window_s": 600, "reflect_quiet_s": 60}

    with swapped(stack.clients, **windows):
        said = api.post("/v1/chat", json={"user_id": user, "session_id": "a", "message": "I moved to Berlin."})
        replied = time.monotonic()
        assert said.status_code == 200 and said.json()["memory_saved"] is True, said.text
        job_id = said.json()["job_id"]

        def pending_in_b() -> list[dict]:
            block = api.get("/v1/context", params={"user_id": user, "session_id": "b", "query": "Where do I live?"})
            assert block.status_code == 200, block.text
            return [p for p in block.json()["pending"] if p["job_id"] == job_id]

        found = wait_for(pending_in_b, timeout_s=1.0, interval_s=0.02)
        assert time.monotonic() - replied <= 1.0
        assert [(p["text"], p["learned"], p["session_id"]) for p in found] == [("I moved to Berlin.", False, "a")]

        # Session B's reply is given it too, while every tier holds the job in the user's window.
        asked = api.post("/v1/chat", json={"user_id": user, "session_id": "b", "message": "Where do I live?"}).json()
        assert [p["text"] for p in asked["context"]["pending"]] == ["I moved to Berlin."]
        assert "Berlin" in asked["reply"]
        # Both turns' jobs, in every tier: the user falls quiet below only once nothing said is still on its way
        # (a job held after that would be news, and rightly keep the window open).
        jobs = {job_id, asked["job_id"]}
        wait_for(lambda: held(stack, user) == {(t, j) for t in ("episodic", "semantic", "procedural") for j in jobs})
        status = api.get(f"/v1/jobs/{job_id}")
        assert status.json()["status"] == "queued" and all(t["due_at"] for t in status.json()["tiers"].values())
        assert 30 < int(status.headers["retry-after"]) <= 60  # due once the user has been quiet for 60 s
        assert api.get("/v1/memories", params={"user_id": user}).json()["memories"] == []

        # The user falls quiet; the every-minute window sweep closes the window and the tiers learn it.
        fall_quiet(stack, user, windows["reflect_quiet_s"] + 1)
        stack.run_schedule("windows")
        wait_for(lambda: api.get(f"/v1/jobs/{job_id}").json()["status"] == "done", timeout_s=30)

        block = api.get("/v1/context", params={"user_id": user, "session_id": "c", "query": "Where do I live?"}).json()
    assert block["pending"] == []
    assert [m["text"] for m in block["memories"]].count("User lives in Berlin") == 1
    learned = api.get("/v1/memories", params={"user_id": user, "tier": "semantic"}).json()["memories"]
    assert [m["text"] for m in learned] == ["User lives in Berlin"]
