"""Engine faults during a chat turn: the reply still comes when only recall is hurt, the job stays parked when its
publish after the response fails, it is published before the reply when Valkey is down, and a turn whose job
cannot be saved says so (answer, error log, metric) instead of hiding it."""

from __future__ import annotations

import threading

import pytest

from reverie.cache import keys
from reverie.chat import recall
from reverie.chat import turn as chat
from reverie.domain.tiers import Tier
from reverie.jobs import delivery
from reverie.llm import LLMTimeout, LLMUnavailable
from reverie.platform import after_response
from reverie.platform.metric_names import Metric
from tests.support.chat import (
    claim_age,
    deferred_work_held,
    drain_all_tiers,
    emitted_metrics,
    parked,
    post_chat,
    published,
    tier1,
    valkey_keys_of,
)
from tests.support.clients import swapped
from tests.support.llm import SpyLLM
from tests.support.memories import remember, write_narrative
from tests.support.reflect import job as a_job

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _leave_the_queues_clean(clients, project):
    yield
    drain_all_tiers(clients, project.project_id)

MISSING_TOPIC = "arn:aws:sns:us-east-1:123456789012:no-such-topic.fifo"


def turn(project_id: str, message: str, *, user: str = "ana", session: str = "s1", key: str | None = None,
         wait_deferred: bool = True):
    return post_chat(project_id, {"user_id": user, "session_id": session, "message": message}, key=key,
                     wait_deferred=wait_deferred)


def test_a_failed_reply_is_503_and_nothing_is_stored(clients, project, capsys):
    with swapped(clients, llm=SpyLLM(fail={"reply": LLMTimeout("took too long")})):
        status, answer = turn(project.project_id, "hello")
    assert status == 503 and answer["error"]["code"] == "unavailable"
    assert valkey_keys_of(clients, project.project_id) == [] and published(clients, project.project_id) == []
    assert emitted_metrics(capsys.readouterr().out).get(Metric.REPLY_FAILED) == 1


def test_with_postgres_down_the_reply_comes_without_long_term_memories(clients, project, capsys):
    remember(clients, project.project_id, "ana", "Ana's sister Rosa lives in Lisbon")
    with swapped(clients, postgres_down=True):
        status, answer = turn(project.project_id, "Where does Rosa live?")
    assert status == 200, answer
    assert answer["context"]["memories"] == [] and answer["memory_saved"] is True
    assert [j.job_id for j in published(clients, project.project_id)] == [answer["job_id"]]
    assert len(tier1(clients, project.project_id, "ana", "s1")) == 2
    assert emitted_metrics(capsys.readouterr().out).get(Metric.LONG_TERM_RECALL_SKIPPED) == 1


def test_with_valkey_down_the_reply_comes_without_recent_turns_and_the_job_goes_straight_to_the_topic(
    clients, project, capsys,
):
    turn(project.project_id, "I am planning a trip")
    published(clients, project.project_id)
    recorder = SpyLLM()
    with swapped(clients, llm=recorder, valkey_down=True):
        status, answer = turn(project.project_id, "To Lisbon")
    assert status == 200 and answer["memory_saved"] is True
    assert [m["role"] for m in recorder.replies[0]] == ["system", "user"]
    assert [j.job_id for j in published(clients, project.project_id)] == [answer["job_id"]]
    assert parked(clients, project.project_id, "ana") == []
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics.get(Metric.RECENT_TURNS_SKIPPED) == 1 and metrics.get(Metric.WORKING_MEMORY_NOT_UPDATED) == 1


def test_with_the_topic_down_the_job_is_parked_and_the_reply_says_saved(clients, project, capsys):
    with swapped(clients, reflection_topic_arn=MISSING_TOPIC):
        status, answer = turn(project.project_id, "I moved to Berlin")
    assert status == 200 and answer["memory_saved"] is True
    assert [j.job_id for j in parked(clients, project.project_id, "ana")] == [answer["job_id"]]
    assert published(clients, project.project_id) == []
    assert len(tier1(clients, project.project_id, "ana", "s1")) == 2
    assert emitted_metrics(capsys.readouterr().out).get(Metric.JOB_PARKED) == 1


def test_with_valkey_down_the_job_is_published_before_the_reply(clients, project):
    with deferred_work_held(), swapped(clients, valkey_down=True):
        status, answer = turn(project.project_id, "I moved to Berlin", wait_deferred=False)
        assert status == 200 and answer["memory_saved"] is True
        assert [j.job_id for j in published(clients, project.project_id)] == [answer["job_id"]]
    assert parked(clients, project.project_id, "ana") == []


def test_a_publish_that_fails_after_the_reply_leaves_the_job_parked_and_a_later_drain_publishes_it_once(
    clients, project, capsys,
):
    with swapped(clients, reflection_topic_arn=MISSING_TOPIC):
        status, answer = turn(project.project_id, "I moved to Berlin")
    assert status == 200 and answer["memory_saved"] is True
    assert [j.job_id for j in parked(clients, project.project_id, "ana")] == [answer["job_id"]]
    assert published(clients, project.project_id) == []
    assert emitted_metrics(capsys.readouterr().out).get(Metric.JOB_PARKED) == 1
    assert delivery.drain_user(clients, project.project_id, "ana").published == 1
    assert [j.job_id for j in published(clients, project.project_id)] == [answer["job_id"]]
    assert delivery.drain_user(clients, project.project_id, "ana").published == 0
    assert published(clients, project.project_id) == [] and parked(clients, project.project_id, "ana") == []


def test_valkey_failing_after_the_reply_leaves_the_job_parked_with_a_warning_for_a_later_drain(
    clients, project, caplog,
):
    with deferred_work_held() as release:
        status, answer = turn(project.project_id, "I moved to Berlin", wait_deferred=False)
        with swapped(clients, valkey_down=True):
            release()
            assert after_response.drain(10)
    assert status == 200 and answer["memory_saved"] is True
    assert [j.job_id for j in parked(clients, project.project_id, "ana")] == [answer["job_id"]]
    assert published(clients, project.project_id) == []
    assert any(r.levelname == "WARNING" and "job left in the outbox" in r.getMessage() for r in caplog.records)
    assert delivery.drain_user(clients, project.project_id, "ana").published == 1
    assert [j.job_id for j in published(clients, project.project_id)] == [answer["job_id"]]
    assert parked(clients, project.project_id, "ana") == []


def test_a_job_parked_behind_one_another_drainer_is_publishing_goes_out_once_that_drainer_is_done(
    clients, project, monkeypatch,
):
    """Two Lambda environments serving one user: the other one is still publishing the user's earlier job when
    this turn's publish starts, and read the outbox before this turn's job was parked."""
    earlier = a_job(project.project_id, "ana", "earlier")
    delivery.park(clients.valkey, earlier)
    claim_age(clients, earlier, 0)
    seen_busy = threading.Event()
    real_drain = delivery.drain_user

    def watched_drain(*args, **kwargs):
        result = real_drain(*args, **kwargs)
        if result.busy:
            seen_busy.set()
        return result

    def other_drainer_finishes():
        assert seen_busy.wait(10)
        delivery.send(clients.sns, clients.settings.reflection_topic_arn, earlier)
        clients.valkey.hdel(keys.outbox_claims(project.project_id, "ana"), earlier.job_id)
        clients.valkey.hdel(keys.outbox(project.project_id, "ana"), earlier.job_id)

    monkeypatch.setattr(delivery, "drain_user", watched_drain)
    monkeypatch.setattr(chat, "BUSY_WAIT_S", 0.2)
    other = threading.Thread(target=other_drainer_finishes)
    other.start()
    status, answer = turn(project.project_id, "later")
    other.join(10)
    assert status == 200 and seen_busy.is_set()
    assert [j.job_id for j in published(clients, project.project_id)] == [earlier.job_id, answer["job_id"]]
    assert parked(clients, project.project_id, "ana") == []


def test_with_the_topic_and_valkey_down_the_reply_says_not_saved_with_an_error_and_a_metric(
    clients, project, capsys, caplog,
):
    with swapped(clients, reflection_topic_arn=MISSING_TOPIC, valkey_down=True):
        status, answer = turn(project.project_id, "I moved to Berlin")
    assert status == 200 and answer["memory_saved"] is False and answer["reply"]
    assert emitted_metrics(capsys.readouterr().out).get(Metric.MEMORY_NOT_SAVED) == 1
    assert any(r.levelname == "ERROR" and "memory not saved" in r.getMessage() for r in caplog.records)


def test_the_users_next_turn_publishes_the_parked_jobs_first_and_in_order(clients, project, capsys):
    with swapped(clients, reflection_topic_arn=MISSING_TOPIC):
        _, first = turn(project.project_id, "first")
        _, second = turn(project.project_id, "second")
    _, third = turn(project.project_id, "third")
    assert [j.job_id for j in published(clients, project.project_id)] == [
        first["job_id"], second["job_id"], third["job_id"]]
    assert parked(clients, project.project_id, "ana") == []
    # the turn's own job went out on the normal path: only the two held-back ones count as drained
    assert emitted_metrics(capsys.readouterr().out).get(Metric.OUTBOX_DRAINED) == 2


def test_another_users_parked_jobs_do_not_hold_back_this_user(clients, project):
    with swapped(clients, reflection_topic_arn=MISSING_TOPIC):
        turn(project.project_id, "ben's turn", user="ben")
    _, mine = turn(project.project_id, "ana's turn")
    assert [j.job_id for j in published(clients, project.project_id)] == [mine["job_id"]]
    assert len(parked(clients, project.project_id, "ben")) == 1


def test_an_unchecked_retry_with_valkey_down_publishes_the_same_job_id_which_the_topic_drops(clients, project):
    with swapped(clients, valkey_down=True):
        _, first = turn(project.project_id, "remember my cat Miso", key="retry-k")
        _, again = turn(project.project_id, "remember my cat Miso", key="retry-k")
    assert first["job_id"] == again["job_id"]
    assert [j.job_id for j in published(clients, project.project_id)] == [first["job_id"]]


def test_when_the_query_cannot_be_embedded_full_text_search_still_recalls(clients, project, capsys):
    sister = remember(clients, project.project_id, "ana", "Ana's sister Rosa lives in Lisbon")
    with swapped(clients, llm=SpyLLM(fail={"embed": LLMUnavailable("embeddings down")})):
        status, answer = turn(project.project_id, "Where does Rosa live?")
    assert status == 200 and [m["id"] for m in answer["context"]["memories"]] == [sister]
    assert emitted_metrics(capsys.readouterr().out).get(Metric.QUERY_EMBEDDING_SKIPPED) == 1
    published(clients, project.project_id)


def test_a_recall_lookup_slower_than_the_deadline_is_left_out_and_keeps_what_it_found_before(
        clients, project, monkeypatch):
    write_narrative(clients, project.project_id, "ana", "Ana is a teacher in Porto.")
    rule = remember(clients, project.project_id, "ana", "Answer Ana in Portuguese", Tier.PROCEDURAL)
    turn(project.project_id, "I teach maths")
    real, released = recall.fresh_narrative, threading.Event()

    def hung(*args, **kwargs):
        released.wait(5)
        return real(*args, **kwargs)

    monkeypatch.setattr(recall, "fresh_narrative", hung)
    monkeypatch.setattr(chat, "RECALL_DEADLINE_S", 0.2)
    context = recall.build_context(clients, project.project_id, "ana", query="hello", session_id="s1",
                                   max_tokens=500, deadline_s=0.2)
    # The narrative is read last on its lookup: the session's turns, the rules and what the user said stay (the turn
    # said is in the session's turns, so it is not shown twice).
    assert context.narrative is None and context.pending == [] and context.degraded == ["postgres"]
    assert [m.id for m in context.rules] == [rule]
    assert [t.content for t in context.recent_turns][:1] == ["I teach maths"]
    status, answer = turn(project.project_id, "hello")
    assert status == 200 and answer["context"]["narrative"] is False
    assert [r["id"] for r in answer["context"]["rules"]] == [rule]
    released.set()
    published(clients, project.project_id)
