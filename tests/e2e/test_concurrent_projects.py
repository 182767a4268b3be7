"""Two projects at once through the local stack: each answer carries its own project's data only.

Lambda runs one invocation per function instance at a time, so a function's module state (the resolver's
current event) belongs to one request. The local runner must keep that promise under concurrent requests,
or one project's request could be answered in another project's scope.
"""

from __future__ import annotations

import secrets
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.projects import new_project

pytestmark = pytest.mark.e2e

REQUESTS = 160
THREADS = 16
# Threads switch this often during the test (Python's default is 5 ms): requests interleave at many more points,
# so a state two of them share shows in a few seconds instead of once in a while.
SWITCH_INTERVAL_S = 1e-5
# One user id in both projects: a request served in the wrong project's scope finds the other's memory.
MARKERS = {"a": ("beekeeping", "I keep bees in Coimbra, beekeeping is my hobby."),
           "b": ("harpsichord", "I restore an old harpsichord in Lyon.")}


def test_concurrent_requests_of_two_projects_each_see_only_their_own_memories(stack):
    user = "shared-" + secrets.token_hex(4)
    keys = {name: new_project(stack.clients.db, f"conc-{name}").key for name in MARKERS}
    for name, (_, text) in MARKERS.items():
        answer = httpx.post(f"{stack.base_url}/v1/memories", headers=_auth(keys[name]), timeout=30,
                            json={"user_id": user, "messages": [{"role": "user", "content": text}], "infer": False})
        assert answer.status_code == 201, answer.text

    def call(i: int) -> tuple[str, str, int, str]:
        name = "ab"[i % 2]
        word = MARKERS[name][0]
        kind = ["list", "search", "context", "list", "search", "context", "chat"][i // 2 % 7]
        with httpx.Client(base_url=stack.base_url, headers=_auth(keys[name]), timeout=60) as http:
            if kind == "list":
                answer = http.get("/v1/memories", params={"user_id": user})
            elif kind == "search":
                answer = http.post("/v1/memories/search", json={"user_id": user, "query": word})
            elif kind == "context":
                answer = http.get("/v1/context", params={"user_id": user, "query": word})
            else:
                answer = http.post("/v1/chat", json={"user_id": user, "session_id": f"s-{name}-{i}",
                                                     "message": f"What do you know about my {word}?"})
        return name, kind, answer.status_code, answer.text

    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        with ThreadPoolExecutor(THREADS) as pool:
            answers = list(pool.map(call, range(REQUESTS)))
    finally:
        sys.setswitchinterval(interval)

    wrong = []
    for name, kind, status, text in answers:
        own, other = MARKERS[name][0], MARKERS["b" if name == "a" else "a"][0]
        if status != 200 or other in text or (kind != "chat" and own not in text):
            wrong.append((name, kind, status, text[:300]))
    assert wrong == [], f"{len(wrong)} of {REQUESTS} answers were not their own project's: {wrong[:3]}"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
