"""Reflection windows: a user's jobs held across queue batches and learned with one model call per tier, the
sweep that closes windows which waited long enough, and what happens when a window keeps failing."""

from __future__ import annotations

import json

import pytest

from reverie.domain.tiers import TIERS, Tier, TierStatus
from reverie.jobs.status import RETRY_AFTER_QUEUED_S, job_status, poll_hints
from reverie.llm import LLMUnavailable
from reverie.reflect import window
from reverie.reflect.consumer import handle_batch
from tests.support.clients import Swapped
from tests.support.llm import SpyLLM
from tests.support.reflect import PrivateQueue, event, job, memories_of, outcome

pytestmark = pytest.mark.integration

TIER = Tier.SEMANTIC


def held(clients, project_id: str, user_id: str | None = None) -> list[str]:
    with clients.db.cursor(project_id) as cur:
        cur.execute("SELECT job_id FROM held_jobs WHERE project_id = %s AND (%s::text IS NULL OR user_id = %s)"
                    " ORDER BY seq", (project_id, user_id, user_id))
        return [r["job_id"] for r in cur.fetchall()]


def age_window(clients, project_id: str, seconds: int) -> None:
    """Make the project's held jobs look `seconds` old (instead of waiting that long)."""
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute("UPDATE held_jobs SET held_at = now() - make_interval(secs => %s) WHERE project_id = %s",
                    (seconds, project_id))


def wait_out_failures(clients, project_id: str) -> None:
    """Let the time pass that a held job waits after a failed window (instead of waiting that long)."""
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute("UPDATE held_jobs SET retry_at = now() - interval '1 second' WHERE project_id = %s", (project_id,))


def test_a_users_jobs_over_three_batches_are_learned_with_one_call_when_the_window_fills(
    clients, project, lambda_context,
):
    p = project.project_id
    llm = SpyLLM()
    reflecting = Swapped(clients, llm=llm, reflect_window_jobs=20, reflect_window_s=300)
    ana = [job(p, "ana", f"I have a plant called Fern{i}.") for i in range(25)]

    for batch in (ana[:10], ana[10:19]):
        assert handle_batch(TIER, event(*batch), lambda_context, reflecting) == {"batchItemFailures": []}
    assert llm.total() == 0 and memories_of(clients.db, p, "ana") == []
    assert held(clients, p) == [j.job_id for j in ana[:19]]
    status = job_status(reflecting, p, ana[0].job_id).tiers[TIER]
    assert status.status == TierStatus.QUEUED and "learned when 20 have gathered" in status.reason

    handle_batch(TIER, event(*ana[19:]), lambda_context, reflecting)

    assert llm.calls["extract_semantic"] == 1 and llm.calls["embed"] == 1
    assert len(memories_of(clients.db, p, "ana", TIER)) == 25
    assert held(clients, p) == []
    assert all(outcome(clients.db, p, j.job_id, TIER)["status"] == "done" for j in ana)


def test_jobs_delivered_again_after_their_window_was_learned_change_nothing(clients, project, lambda_context):
    p = project.project_id
    reflecting = Swapped(clients, llm=SpyLLM(), reflect_window_jobs=3)
    ana = [job(p, "ana", f"I play the {instrument}.") for instrument in ("cello", "oboe", "harp")]
    handle_batch(TIER, event(*ana), lambda_context, reflecting)
    before = memories_of(clients.db, p, "ana")

    again = SpyLLM()
    handle_batch(TIER, event(*ana, receive_count=2), lambda_context, Swapped(reflecting, llm=again))

    assert memories_of(clients.db, p, "ana") == before and len(before) == 3
    assert again.total() == 0 and held(clients, p) == []


def test_the_sweep_closes_a_window_that_waited_long_enough_through_the_users_queue(clients, project, lambda_context):
    p = project.project_id
    queue = PrivateQueue(clients.sqs)
    llm = SpyLLM()
    reflecting = Swapped(clients, llm=llm, reflect_window_jobs=20, reflect_window_s=60, semantic_queue_url=queue.url)
    ana = [job(p, "ana", "I live in Porto."), job(p, "ana", "I work at Acme.")]
    bob = [job(p, "bob", "I live in Oslo.")]
    handle_batch(TIER, event(*ana, *bob), lambda_context, reflecting)
    assert window.sweep(reflecting).windows == 0  # nothing has waited 60 s yet

    age_window(clients, p, 61)
    swept = window.sweep(reflecting)
    assert (swept.windows, swept.sent) == (2, 2)
    messages = clients.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10,
                                           AttributeNames=["All"], VisibilityTimeout=0)["Messages"]
    assert sorted(m["Attributes"]["MessageGroupId"] for m in messages) == [f"{p}:ana", f"{p}:bob"]
    assert {json.loads(m["Body"])["kind"] for m in messages} == {window.CLOSE}

    queue.drain(TIER, reflecting, lambda_context)

    assert llm.calls["extract_semantic"] == 2  # one per user
    assert {m["text"] for m in memories_of(clients.db, p, "ana")} == {"User lives in Porto", "User works at Acme"}
    assert {m["text"] for m in memories_of(clients.db, p, "bob")} == {"User lives in Oslo"}
    assert held(clients, p) == [] and queue.counts() == 0


def test_a_window_learns_in_arrival_order_so_a_later_move_supersedes(clients, project, lambda_context):
    p = project.project_id
    reflecting = Swapped(clients, llm=SpyLLM(), reflect_window_jobs=3)
    handle_batch(TIER, event(job(p, "ana", "I live in Porto.")), lambda_context, reflecting)
    handle_batch(TIER, event(job(p, "ana", "I work at Acme.")), lambda_context, reflecting)
    handle_batch(TIER, event(job(p, "ana", "I moved to Berlin.")), lambda_context, reflecting)

    current = {m["text"] for m in memories_of(clients.db, p, "ana", TIER, current_only=True)}
    assert "User lives in Berlin" in current and "User lives in Porto" not in current
    porto = [m for m in memories_of(clients.db, p, "ana", TIER) if m["text"] == "User lives in Porto"]
    assert porto and porto[0]["superseded_at"] is not None


def test_the_records_that_close_a_failing_window_fail_back_to_the_queue_and_the_held_jobs_say_failed(
    clients, project, lambda_context,
):
    p = project.project_id
    failing = SpyLLM(fail={"extract_semantic": LLMUnavailable("upstream 502", status=502)})
    reflecting = Swapped(clients, llm=failing, reflect_window_jobs=3)
    first = [job(p, "ana", "I live in Porto."), job(p, "ana", "I work at Acme.")]
    handle_batch(TIER, event(*first), lambda_context, reflecting)
    closing = job(p, "ana", "I have a cat.")

    bob = job(p, "bob", "I live in Oslo.")  # held, not due: his record succeeds

    answer = handle_batch(TIER, event(closing, bob), lambda_context, reflecting)

    assert len(answer["batchItemFailures"]) == 1
    assert held(clients, p, "ana") == [j.job_id for j in (*first, closing)]
    for j in first:
        row = outcome(clients.db, p, j.job_id, TIER)
        assert row["status"] == "failed" and "attempt 1 of 5" in row["error"] and "upstream 502" in row["error"]
    assert "receive 1 of 5" in outcome(clients.db, p, closing.job_id, TIER)["error"]

    # The redelivery closes the window again; with the model back, everything is learned once.
    handle_batch(TIER, event(closing, receive_count=2), lambda_context, Swapped(reflecting, llm=SpyLLM()))
    assert held(clients, p, "ana") == []
    assert all(outcome(clients.db, p, j.job_id, TIER)["status"] == "done" for j in (*first, closing))
    assert len(memories_of(clients.db, p, "ana", TIER)) == 3


def test_held_jobs_out_of_attempts_are_parked_in_the_dlq_dead_and_the_window_moves_on(
    clients, project, lambda_context,
):
    p = project.project_id
    queue = PrivateQueue(clients.sqs)
    failing = SpyLLM(fail={"extract_semantic": LLMUnavailable("upstream 502", status=502)})
    reflecting = Swapped(clients, llm=failing, reflect_window_jobs=20, semantic_queue_url=queue.url,
                         semantic_dlq_url=queue.dlq_url)
    stuck = [job(p, "ana", "I live in Porto."), job(p, "ana", "I work at Acme.")]
    handle_batch(TIER, event(*stuck), lambda_context, reflecting)
    close = {"Records": [dict(event(stuck[0])["Records"][0], body=window.CloseRequest(p, "ana", TIER).body())]}

    for attempt in range(1, 6):
        # A close message never fails its record: the held jobs count the attempts, one per retry period.
        wait_out_failures(clients, p)
        assert handle_batch(TIER, close, lambda_context, reflecting) == {"batchItemFailures": []}
        if attempt < 5:
            assert held(clients, p) == [j.job_id for j in stuck]

    assert held(clients, p) == []
    for j in stuck:
        status = job_status(reflecting, p, j.job_id).tiers[TIER]
        assert status.status == TierStatus.DEAD and "attempt 5 of 5" in status.error
    parked = clients.sqs.receive_message(QueueUrl=queue.dlq_url, MaxNumberOfMessages=10,
                                         AttributeNames=["All"])["Messages"]
    assert sorted(json.loads(m["Body"])["job_id"] for m in parked) == sorted(j.job_id for j in stuck)
    assert {m["Attributes"]["MessageGroupId"] for m in parked} == {f"{p}:ana"}

    # Later jobs are not held hostage: the next window holds only them.
    later = job(p, "ana", "I have a cat.")
    handle_batch(TIER, event(later), lambda_context, Swapped(reflecting, llm=SpyLLM(), reflect_window_jobs=1))
    assert outcome(clients.db, p, later.job_id, TIER)["status"] == "done"


def test_a_delivered_job_failing_on_its_last_receive_leaves_the_window_for_the_dlq(clients, project, lambda_context):
    p = project.project_id
    failing = SpyLLM(fail={"extract_semantic": LLMUnavailable("upstream 502", status=502)})
    reflecting = Swapped(clients, llm=failing, reflect_window_jobs=1)
    j = job(p, "ana", "I live in Porto.")

    with pytest.raises(Exception, match="All records failed"):  # Lambda gives the batch back; SQS moves it
        handle_batch(TIER, event(j, receive_count=5), lambda_context, reflecting)

    assert held(clients, p) == []  # so the window does not learn it behind the DLQ's back
    status = job_status(reflecting, p, j.job_id).tiers[TIER]
    assert status.status == TierStatus.DEAD and "receive 5 of 5" in status.error


@pytest.mark.parametrize("body", [
    {"kind": "close_window", "project_id": "p", "user_id": "ana", "tier": "astral"},
    {"kind": "close_window", "project_id": "no spaces allowed", "user_id": "ana", "tier": "semantic"},
    {"kind": "close_window", "user_id": "ana", "tier": "semantic"},
])
def test_a_malformed_close_message_is_refused_and_parked(clients, project, lambda_context, body):
    queue = PrivateQueue(clients.sqs)
    reflecting = Swapped(clients, llm=SpyLLM(), semantic_dlq_url=queue.dlq_url)
    record = dict(event(job(project.project_id, "ana", "x"))["Records"][0], body=json.dumps(body))

    assert handle_batch(TIER, {"Records": [record]}, lambda_context, reflecting) == {"batchItemFailures": []}

    parked = clients.sqs.receive_message(QueueUrl=queue.dlq_url, MessageAttributeNames=["All"])["Messages"]
    assert "close message" in parked[0]["MessageAttributes"]["refused_reason"]["StringValue"]
    assert held(clients, project.project_id) == []


def test_a_window_left_open_past_its_time_is_reported_by_status_and_the_health_probe(
    clients, project, lambda_context, capsys,
):
    from reverie.ops.status import system_status
    from reverie.platform.metric_names import Metric
    from tests.support.chat import emitted_metrics
    from tests.support.functions import load_function

    p = project.project_id
    handle_batch(TIER, event(job(p, "ana", "I live in Porto.")), lambda_context,
                 Swapped(clients, llm=SpyLLM(), reflect_window_jobs=20))
    age_window(clients, p, clients.settings.reflect_window_s + 400)  # as if no sweep had run for 400 s
    try:
        held_now = system_status(clients)["held"]
        assert held_now[TIER.value]["jobs"] >= 1
        assert held_now[TIER.value]["oldest_age_s"] >= clients.settings.reflect_window_s + 400

        capsys.readouterr()
        load_function("HealthProbeFunction")({}, lambda_context)
        assert emitted_metrics(capsys.readouterr().out)[Metric.HELD_OVERDUE] >= 400
    finally:
        with clients.db.transaction(p) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM held_jobs WHERE project_id = %s", (p,))


def test_held_jobs_are_in_the_users_export_and_gone_after_a_forget(clients, project, lambda_context):
    from reverie.api.users import export_user, forget_user

    p = project.project_id
    words = job(p, "ana", "My bank PIN is written in my diary.")
    handle_batch(TIER, event(words), lambda_context, Swapped(clients, llm=SpyLLM(), reflect_window_jobs=20))

    exported = export_user(clients, p, "ana").held_jobs
    assert [(h.tier, h.job.job_id) for h in exported] == [(TIER.value, words.job_id)]
    assert exported[0].job.turns[0].content == "My bank PIN is written in my diary."

    forget_user(clients, p, "ana")

    assert held(clients, p) == [] and export_user(clients, p, "ana").held_jobs == []


def test_a_model_outage_shorter_than_a_queued_messages_retry_budget_dead_letters_no_held_job(
    clients, project, lambda_context,
):
    """Every failed close used to count an attempt, so a sweep each minute dead-lettered held jobs after five
    minutes of outage. A failure now counts once per retry period (a queue's visibility timeout), as a queued
    message's receives do, and the sweep leaves alone a window that waits one out."""
    p = project.project_id
    queue = PrivateQueue(clients.sqs)
    down = SpyLLM(fail={"extract_semantic": LLMUnavailable("upstream 502", status=502)})
    reflecting = Swapped(clients, llm=down, reflect_window_jobs=20, reflect_window_s=60,
                         semantic_queue_url=queue.url, semantic_dlq_url=queue.dlq_url)
    stuck = [job(p, "ana", "I live in Porto."), job(p, "ana", "I work at Acme.")]
    handle_batch(TIER, event(*stuck), lambda_context, reflecting)
    age_window(clients, p, 120)
    close = {"Records": [dict(event(stuck[0])["Records"][0], body=window.CloseRequest(p, "ana", TIER).body())]}

    for _minute in range(15):  # a quarter of an hour of closes, as often as anything could send them
        assert handle_batch(TIER, close, lambda_context, reflecting) == {"batchItemFailures": []}
        assert window.sweep(reflecting).windows == 0  # waiting out the failure: the sweep does not close it
    assert held(clients, p) == [j.job_id for j in stuck]
    for j in stuck:
        status = job_status(reflecting, p, j.job_id).tiers[TIER]
        assert status.status == TierStatus.FAILED and "attempt 1 of 5" in status.error
    assert queue.counts(queue.dlq_url) == 0

    wait_out_failures(clients, p)  # the retry period has passed; the model is back
    assert window.sweep(reflecting).windows == 1
    handle_batch(TIER, close, lambda_context, Swapped(reflecting, llm=SpyLLM()))
    assert held(clients, p) == []
    assert all(outcome(clients.db, p, j.job_id, TIER)["status"] == "done" for j in stuck)


# ---------------------------------------------------------------- the user falling quiet


def age_user_window(clients, project_id: str, user_id: str, oldest_s: int, newest_s: int) -> None:
    """Make the user's held jobs look as if the oldest was held `oldest_s` ago and the newest `newest_s` ago."""
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute("UPDATE held_jobs h SET held_at = now() - make_interval(secs => CASE WHEN seq = (SELECT min(seq)"
                    " FROM held_jobs o WHERE o.project_id = h.project_id AND o.user_id = h.user_id AND o.tier = h.tier)"
                    " THEN %s ELSE %s END) WHERE project_id = %s AND user_id = %s",
                    (oldest_s, newest_s, project_id, user_id))


def test_the_sweep_closes_the_window_of_a_user_gone_quiet_before_its_age_limit(clients, project, lambda_context):
    p = project.project_id
    queue = PrivateQueue(clients.sqs)
    llm = SpyLLM()
    reflecting = Swapped(clients, llm=llm, reflect_window_jobs=20, reflect_window_s=300, reflect_quiet_s=60,
                         semantic_queue_url=queue.url)
    handle_batch(TIER, event(job(p, "ana", "I live in Porto."), job(p, "ana", "I work at Acme."),
                             job(p, "bob", "I live in Oslo."), job(p, "bob", "I work at Globex.")),
                 lambda_context, reflecting)
    age_user_window(clients, p, "ana", oldest_s=90, newest_s=61)  # finished talking a minute ago
    age_user_window(clients, p, "bob", oldest_s=250, newest_s=20)  # still talking, well within the age limit

    swept = window.sweep(reflecting)
    assert (swept.windows, swept.sent) == (1, 1)
    queue.drain(TIER, reflecting, lambda_context)

    assert llm.calls["extract_semantic"] == 1  # one call for both of Ana's jobs
    assert {m["text"] for m in memories_of(clients.db, p, "ana")} == {"User lives in Porto", "User works at Acme"}
    assert held(clients, p, "ana") == [] and len(held(clients, p, "bob")) == 2
    assert window.sweep(Swapped(reflecting, reflect_quiet_s=0)).windows == 0  # off: only the age limit closes


def test_a_held_jobs_status_says_when_its_window_is_due_and_retry_after_waits_until_then(
    clients, project, lambda_context,
):
    p = project.project_id
    reflecting = Swapped(clients, llm=SpyLLM(), reflect_window_jobs=20, reflect_window_s=300, reflect_quiet_s=60)
    first, second = job(p, "ana", "I live in Porto."), job(p, "ana", "I work at Acme.")
    for tier in TIERS:
        handle_batch(tier, event(first, second), lambda_context, reflecting)
    age_user_window(clients, p, "ana", oldest_s=280, newest_s=30)

    status = job_status(reflecting, p, first.job_id)
    tier = status.tiers[TIER]
    assert tier.status == TierStatus.QUEUED and tier.due_at is not None
    assert "learned when 20 have gathered" in tier.reason and "quiet for 60 s" in tier.reason
    # Due at the sooner of the oldest job's 300 s (in 20 s) and the user's 60 s of quiet (in 30 s).
    assert 15 <= poll_hints(status).retry_after_s <= 21

    age_user_window(clients, p, "ana", oldest_s=100, newest_s=30)
    assert 25 <= poll_hints(job_status(reflecting, p, first.job_id)).retry_after_s <= 31  # quiet in 30 s

    age_user_window(clients, p, "ana", oldest_s=400, newest_s=100)  # due already: the next sweep closes it
    assert poll_hints(job_status(reflecting, p, first.job_id)).retry_after_s == RETRY_AFTER_QUEUED_S
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM held_jobs WHERE project_id = %s", (p,))


# ---------------------------------------------------------------- the cheap check before a model call


@pytest.mark.parametrize(("tier", "words", "reason"), [
    (Tier.SEMANTIC, ("What's the weather like today?", "Thanks!", "How do I cook rice?"),
     "no facts about the user in this exchange"),
    (Tier.PROCEDURAL, ("I live in Porto.", "How do I cook rice?"),
     "no preferences, habits or instructions in this exchange"),
    (Tier.EPISODIC, ("Hi!", "Thanks!", "ok"), "nothing worth an episode (small talk only)"),
])
def test_a_window_with_nothing_the_tier_can_use_is_recorded_empty_without_a_model_call(
    clients, project, lambda_context, tier, words, reason,
):
    p = project.project_id
    llm = SpyLLM()
    jobs = [job(p, "ana", text) for text in words]
    handle_batch(tier, event(*jobs), lambda_context, Swapped(clients, llm=llm, reflect_window_jobs=len(jobs)))

    assert llm.total() == 0
    for j in jobs:
        assert job_status(clients, p, j.job_id).tiers[tier].model_dump(include={"status", "reason"}) == {
            "status": TierStatus.EMPTY, "reason": reason}


def test_one_job_the_tier_can_use_gives_the_whole_window_its_call(clients, project, lambda_context):
    p = project.project_id
    llm = SpyLLM()
    jobs = [job(p, "ana", "What's the weather like today?"), job(p, "ana", "Please always answer in Portuguese.")]
    handle_batch(Tier.PROCEDURAL, event(*jobs), lambda_context, Swapped(clients, llm=llm, reflect_window_jobs=2))

    assert llm.calls["extract_procedural"] == 1
    assert [m["text"] for m in memories_of(clients.db, p, "ana", Tier.PROCEDURAL)] == ["Always answer in Portuguese"]


def test_without_the_cheap_check_every_window_gets_its_call(clients, project, lambda_context):
    p = project.project_id
    llm = SpyLLM()
    handle_batch(TIER, event(job(p, "ana", "Thanks!")), lambda_context,
                 Swapped(clients, llm=llm, reflect_window_jobs=1, reflect_cheap_check=False))
    assert llm.calls["extract_semantic"] == 1
