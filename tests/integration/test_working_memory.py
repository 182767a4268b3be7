"""Tier 1 on a real Valkey: capped, expiring, read back oldest first, and forgotten per user without touching
anyone else."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from reverie.cache import job_markers, keys, users, working_memory
from reverie.chat import idempotency
from reverie.domain.memory import Turn
from reverie.jobs.message import make_job

pytestmark = pytest.mark.integration


def turns(*texts: str) -> list[Turn]:
    return [Turn(role="user" if i % 2 == 0 else "assistant", content=t) for i, t in enumerate(texts)]


def append(clients, project_id, user_id, session_id, items, max_turns=20, ttl_s=600):
    pipe = clients.valkey.pipeline(transaction=False)
    working_memory.append_turns(pipe, project_id, user_id, session_id, items, max_turns, ttl_s)
    pipe.execute()


def test_turns_come_back_oldest_first_capped_at_the_newest(clients, project):
    append(clients, project.project_id, "ana", "s1", turns("one", "two", "three"), max_turns=4)
    append(clients, project.project_id, "ana", "s1", turns("four", "five"), max_turns=4)
    got = working_memory.recent_turns(clients.valkey, project.project_id, "ana", "s1", 10)
    assert [t.content for t in got] == ["two", "three", "four", "five"]
    assert [t.content for t in working_memory.recent_turns(clients.valkey, project.project_id, "ana", "s1", 2)] == [
        "four", "five"]
    assert working_memory.recent_turns(clients.valkey, project.project_id, "ana", "s1", 0) == []


def test_a_session_expires_after_its_ttl_from_the_last_turn(clients, project):
    append(clients, project.project_id, "ana", "s1", turns("one"), ttl_s=100)
    key = keys.session(project.project_id, "ana", "s1")
    assert 0 < clients.valkey.ttl(key) <= 100
    append(clients, project.project_id, "ana", "s1", turns("two"), ttl_s=5000)
    assert clients.valkey.ttl(key) > 100


def test_sessions_users_and_projects_do_not_mix(clients, project):
    append(clients, project.project_id, "ana", "s1", turns("ana s1"))
    append(clients, project.project_id, "ana", "s2", turns("ana s2"))
    append(clients, project.project_id, "ana:bob", "s1", turns("ana:bob s1"))
    append(clients, project.project_id + "-x", "ana", "s1", turns("other project"))
    read = working_memory.recent_turns
    assert [t.content for t in read(clients.valkey, project.project_id, "ana", "s1", 10)] == ["ana s1"]
    assert [t.content for t in read(clients.valkey, project.project_id, "ana:bob", "s1", 10)] == ["ana:bob s1"]


class Answer(BaseModel):
    text: str


def remember_answer(clients, project_id: str, user_id: str, key: str) -> None:
    """An answer remembered for an Idempotency-Key, the way the chat remembers one."""
    idempotency.once(clients.valkey, project_id=project_id, user_id=user_id, key=key, payload={"m": key},
                     run=lambda: Answer(text=f"reply to {key}"), model=Answer, same_request=lambda _: True)


def test_forget_user_deletes_that_users_sessions_and_answers_and_nothing_else(clients, project):
    p = project.project_id
    for session in ("s1", "s2", "s3"):
        append(clients, p, "ana", session, turns(f"ana {session}"))
    append(clients, p, "ana:bob", "s1", turns("bob"))
    append(clients, p + "-x", "ana", "s1", turns("other project"))
    remember_answer(clients, p, "ana", "k1")
    remember_answer(clients, p, "ana:bob", "k1")
    job = make_job(project_id=p, user_id="ana", session_id="s1", turns=turns("x"))
    job_markers.remember(clients.valkey, job)

    # 3 session lists and their set, the answer and its set, the job index; and the job's marker
    assert users.delete_user(clients.valkey, p, "ana") == {"user_keys": 7, "job_markers": 1}
    read = working_memory.recent_turns
    assert all(read(clients.valkey, p, "ana", s, 10) == [] for s in ("s1", "s2", "s3"))
    assert [t.content for t in read(clients.valkey, p, "ana:bob", "s1", 10)] == ["bob"]
    assert [t.content for t in read(clients.valkey, p + "-x", "ana", "s1", 10)] == ["other project"]
    assert users.user_keys(clients.valkey, p, "ana:bob")[-1].startswith(keys.idempotency_prefix(p, "ana:bob") + "#")
    assert clients.valkey.exists(users.user_keys(clients.valkey, p, "ana:bob")[-1])
    assert job_markers.known(clients.valkey, p, job.job_id) is None
    assert users.delete_user(clients.valkey, p, "ana") == {"user_keys": 0, "job_markers": 0}
