"""The reflectors against the real engines: what they learn, exactly once, in order, and what they refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from reverie.domain.tiers import TIERS, Tier
from reverie.llm import LLMTimeout, LLMUnavailable
from reverie.reflect.consumer import handle_batch
from tests.support.clients import Swapped
from tests.support.llm import SpyLLM
from tests.support.reflect import event, events_of, job, memories_of, outcome, record

pytestmark = pytest.mark.integration


@pytest.fixture
def llm():
    return SpyLLM()


@pytest.fixture
def reflecting(clients, llm):
    return Swapped(clients, llm=llm)


def reflect_all(reflecting, context, evt):
    return {tier: handle_batch(tier, evt, context, reflecting) for tier in TIERS}


def test_first_person_statements_become_facts_rules_and_an_episode(reflecting, project, lambda_context):
    j = job(project.project_id, "ana", "I live in Porto and I always take the train.", "My sister is Ana.",
            "Please always answer in Portuguese.")
    answers = reflect_all(reflecting, lambda_context, event(j))

    assert all(a == {"batchItemFailures": []} for a in answers.values())
    db = reflecting.db
    facts = {m["text"] for m in memories_of(db, project.project_id, "ana", Tier.SEMANTIC)}
    rules = {m["text"] for m in memories_of(db, project.project_id, "ana", Tier.PROCEDURAL)}
    episodes = memories_of(db, project.project_id, "ana", Tier.EPISODIC)
    assert facts == {"User lives in Porto", "User's sister is Ana"}
    assert rules == {"User always takes the train", "Always answer in Portuguese"}
    assert len(episodes) == 1 and "User lives in Porto" in episodes[0]["text"]
    assert episodes[0]["metadata"]["who"] == ["Ana"]
    done = outcome(db, project.project_id, j.job_id, Tier.SEMANTIC)
    assert done["status"] == "done" and done["added"] == 2


def test_every_change_is_an_event_with_its_job(reflecting, project, lambda_context):
    j = job(project.project_id, "u1", "I work at Acme.")
    handle_batch(Tier.SEMANTIC, event(j), lambda_context, reflecting)

    (memory,) = memories_of(reflecting.db, project.project_id, "u1", Tier.SEMANTIC)
    assert memory["source_job_id"] == j.job_id
    assert events_of(reflecting.db, project.project_id, "u1") == [
        {"memory_id": memory["id"], "event": "ADD", "job_id": j.job_id, "old_text": None,
         "new_text": "User works at Acme"},
    ]


def test_redelivered_job_changes_nothing(reflecting, llm, project, lambda_context):
    j = job(project.project_id, "u1", "I live in Porto.", "I prefer short answers.")
    evt = event(j)
    reflect_all(reflecting, lambda_context, evt)
    db = reflecting.db
    before = (memories_of(db, project.project_id, "u1"), events_of(db, project.project_id, "u1"),
              {t: outcome(db, project.project_id, j.job_id, t) for t in TIERS})
    calls_before = llm.total()

    redelivered = event(j, receive_count=2)
    answers = reflect_all(reflecting, lambda_context, redelivered)

    assert all(a == {"batchItemFailures": []} for a in answers.values())
    after = (memories_of(db, project.project_id, "u1"), events_of(db, project.project_id, "u1"),
             {t: outcome(db, project.project_id, j.job_id, t) for t in TIERS})
    assert after == before
    assert llm.total() == calls_before  # a job already learned costs no model call


def test_moving_supersedes_the_old_home_and_keeps_it(reflecting, project, lambda_context):
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    first = job(project.project_id, "u1", "I live in Porto.", at=t0)
    second = job(project.project_id, "u1", "I moved to Berlin.", at=t0 + timedelta(minutes=1))
    handle_batch(Tier.SEMANTIC, event(first), lambda_context, reflecting)
    handle_batch(Tier.SEMANTIC, event(second), lambda_context, reflecting)

    rows = {m["text"]: m for m in memories_of(reflecting.db, project.project_id, "u1", Tier.SEMANTIC)}
    porto, berlin = rows["User lives in Porto"], rows["User lives in Berlin"]
    assert berlin["superseded_at"] is None
    assert porto["superseded_at"] is not None and porto["valid_to"] is not None
    assert porto["superseded_by"] == berlin["id"]
    moved = outcome(reflecting.db, project.project_id, second.job_id, Tier.SEMANTIC)
    assert (moved["status"], moved["added"], moved["superseded"]) == ("done", 1, 1)
    kinds = [(e["event"], e["job_id"]) for e in events_of(reflecting.db, project.project_id, "u1")]
    assert ("SUPERSEDE", second.job_id) in kinds


def test_a_change_within_one_batch_supersedes_the_earlier_item(reflecting, project, lambda_context):
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    first = job(project.project_id, "u1", "I live in Porto.", at=t0)
    second = job(project.project_id, "u1", "I moved to Berlin.", at=t0 + timedelta(minutes=1))
    handle_batch(Tier.SEMANTIC, event(first, second), lambda_context, reflecting)

    current = memories_of(reflecting.db, project.project_id, "u1", Tier.SEMANTIC, current_only=True)
    everything = memories_of(reflecting.db, project.project_id, "u1", Tier.SEMANTIC)
    assert [m["text"] for m in current] == ["User lives in Berlin"]
    assert {m["text"] for m in everything} == {"User lives in Porto", "User lives in Berlin"}


def test_a_late_job_does_not_override_a_newer_fact(reflecting, project, lambda_context):
    t0 = datetime.now(UTC) - timedelta(hours=1)
    newer = job(project.project_id, "u1", "I moved to Berlin.", at=t0 + timedelta(minutes=30))
    older = job(project.project_id, "u1", "I live in Porto.", at=t0)  # redriven from the DLQ, late
    handle_batch(Tier.SEMANTIC, event(newer), lambda_context, reflecting)
    handle_batch(Tier.SEMANTIC, event(older), lambda_context, reflecting)

    current = memories_of(reflecting.db, project.project_id, "u1", Tier.SEMANTIC, current_only=True)
    assert [m["text"] for m in current] == ["User lives in Berlin"]
    porto = next(m for m in memories_of(reflecting.db, project.project_id, "u1", Tier.SEMANTIC)
                 if m["text"] == "User lives in Porto")
    assert porto["superseded_by"] == current[0]["id"]


def test_a_duplicate_statement_is_stored_once(reflecting, project, lambda_context):
    first = job(project.project_id, "u1", "My sister is Ana.")
    again = job(project.project_id, "u1", "my sister is Ana!")
    handle_batch(Tier.SEMANTIC, event(first), lambda_context, reflecting)
    handle_batch(Tier.SEMANTIC, event(again), lambda_context, reflecting)
    both = job(project.project_id, "u1", "My sister is Ana.", "My sister is Ana.")
    handle_batch(Tier.SEMANTIC, event(both), lambda_context, reflecting)

    facts = memories_of(reflecting.db, project.project_id, "u1", Tier.SEMANTIC)
    assert [m["text"] for m in facts] == ["User's sister is Ana"]
    second = outcome(reflecting.db, project.project_id, again.job_id, Tier.SEMANTIC)
    assert second["status"] == "empty" and "already known" in second["reason"]


def test_a_near_duplicate_is_not_stored_again(reflecting, project, lambda_context):
    handle_batch(Tier.PROCEDURAL, event(job(project.project_id, "u1", "I always take the train to work.")),
                 lambda_context, reflecting)
    handle_batch(Tier.PROCEDURAL, event(job(project.project_id, "u1", "I always take a train to work.")),
                 lambda_context, reflecting)

    rules = memories_of(reflecting.db, project.project_id, "u1", Tier.PROCEDURAL)
    assert [m["text"] for m in rules] == ["User always takes the train to work"]  # not "a train" as well


def test_a_refined_statement_updates_the_memory_in_place(reflecting, project, lambda_context):
    handle_batch(Tier.PROCEDURAL, event(job(project.project_id, "u1", "I always take the train to work.")),
                 lambda_context, reflecting)
    refined = job(project.project_id, "u1", "I always take the train to work on weekdays.")
    handle_batch(Tier.PROCEDURAL, event(refined), lambda_context, reflecting)

    (rule,) = memories_of(reflecting.db, project.project_id, "u1", Tier.PROCEDURAL)
    assert rule["text"] == "User always takes the train to work on weekdays"
    update = events_of(reflecting.db, project.project_id, "u1")[-1]
    assert (update["event"], update["job_id"], update["old_text"]) == (
        "UPDATE", refined.job_id, "User always takes the train to work")
    assert outcome(reflecting.db, project.project_id, refined.job_id, Tier.PROCEDURAL)["updated"] == 1


def test_a_new_standing_instruction_replaces_the_old_one_for_its_slot(reflecting, project, lambda_context):
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    handle_batch(Tier.PROCEDURAL, event(job(project.project_id, "u1", "Please always answer in English.", at=t0)),
                 lambda_context, reflecting)
    handle_batch(Tier.PROCEDURAL, event(job(project.project_id, "u1", "Please always answer in Portuguese.",
                                            at=t0 + timedelta(minutes=1))), lambda_context, reflecting)

    current = memories_of(reflecting.db, project.project_id, "u1", Tier.PROCEDURAL, current_only=True)
    assert [m["text"] for m in current] == ["Always answer in Portuguese"]


def test_jobs_of_one_user_in_one_batch_take_one_extraction_call_per_tier(reflecting, llm, project, lambda_context):
    jobs = [job(project.project_id, "u1", f"I have a hobby number {i}.", "I always drink water.")
            for i in range(6)]
    reflect_all(reflecting, lambda_context, event(*jobs))

    assert llm.calls["extract_episodic"] == 1
    assert llm.calls["extract_semantic"] == 1
    assert llm.calls["extract_procedural"] == 1
    assert llm.calls["embed"] == 3  # one batched embedding call per tier
    assert llm.calls["reconcile_semantic"] <= 1 and llm.calls["reconcile_procedural"] <= 1
    for j in jobs:
        assert outcome(reflecting.db, project.project_id, j.job_id, Tier.SEMANTIC)["status"] == "done"


def test_two_users_in_one_batch_are_never_mixed_in_one_prompt(reflecting, llm, project, lambda_context):
    ana = job(project.project_id, "ana", "I live in Porto.")
    bob = job(project.project_id, "bob", "I live in Oslo.")
    handle_batch(Tier.SEMANTIC, event(ana, bob), lambda_context, reflecting)

    assert llm.calls["extract_semantic"] == 2
    assert [m["text"] for m in memories_of(reflecting.db, project.project_id, "ana")] == ["User lives in Porto"]
    assert [m["text"] for m in memories_of(reflecting.db, project.project_id, "bob")] == ["User lives in Oslo"]


def test_one_episode_per_session_in_a_batch(reflecting, project, lambda_context):
    jobs = [job(project.project_id, "u1", "I met Ana for lunch.", session_id="monday"),
            job(project.project_id, "u1", "We talked about Lisbon.", session_id="monday"),
            job(project.project_id, "u1", "I started a new job at Globex.", session_id="tuesday")]
    handle_batch(Tier.EPISODIC, event(*jobs), lambda_context, reflecting)

    episodes = memories_of(reflecting.db, project.project_id, "u1", Tier.EPISODIC)
    assert sorted(m["session_id"] for m in episodes) == ["monday", "tuesday"]
    second = outcome(reflecting.db, project.project_id, jobs[1].job_id, Tier.EPISODIC)
    assert second["status"] == "done" and jobs[0].job_id in second["reason"]


def test_an_exchange_with_nothing_to_learn_is_empty_with_a_reason(reflecting, project, lambda_context):
    j = job(project.project_id, "u1", "What's the capital of France?")
    handle_batch(Tier.SEMANTIC, event(j), lambda_context, reflecting)
    handle_batch(Tier.PROCEDURAL, event(j), lambda_context, reflecting)

    semantic = outcome(reflecting.db, project.project_id, j.job_id, Tier.SEMANTIC)
    procedural = outcome(reflecting.db, project.project_id, j.job_id, Tier.PROCEDURAL)
    assert semantic["status"] == "empty" and "no facts" in semantic["reason"]
    assert procedural["status"] == "empty" and "no preferences" in procedural["reason"]
    assert memories_of(reflecting.db, project.project_id, "u1") == []


def user_rows(db, project_id: str, user_id: str) -> dict[str, int]:
    with db.cursor(project_id) as cur:
        found = {}
        for table in ("memories", "memory_events", "processed_jobs", "llm_usage"):
            cur.execute(f"SELECT count(*) AS n FROM {table} WHERE project_id = %s AND user_id = %s",
                        (project_id, user_id))
            found[table] = cur.fetchone()["n"]
        return found


def test_jobs_of_a_forgotten_user_are_dropped_and_leave_nothing_that_names_the_user(
        reflecting, llm, project, lambda_context):
    from reverie.store import user_data

    j = job(project.project_id, "gone", "I live in Porto.", at=datetime.now(UTC) - timedelta(minutes=1))
    with reflecting.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        user_data.forget_user(cur, project.project_id, "gone")
    answers = reflect_all(reflecting, lambda_context, event(j))

    assert all(a == {"batchItemFailures": []} for a in answers.values())  # dropped, not retried
    assert user_rows(reflecting.db, project.project_id, "gone") == {
        "memories": 0, "memory_events": 0, "processed_jobs": 0, "llm_usage": 0}
    assert llm.total() == 0


def test_a_user_forgotten_while_their_jobs_are_reflected_gets_nothing_back(clients, project, lambda_context):
    from reverie.api.users import forget_user
    from reverie.ops.ledger import usage_totals

    j = job(project.project_id, "leaving", "I live in Porto.", at=datetime.now(UTC) - timedelta(minutes=1))

    class ForgottenMeanwhile(SpyLLM):
        def embed(self, texts, **options):
            forget_user(clients, project.project_id, "leaving")  # takes the reflectors' lock, commits
            return super().embed(texts, **options)

    thinking = Swapped(clients, llm=ForgottenMeanwhile())
    answer = handle_batch(Tier.SEMANTIC, event(j), lambda_context, thinking)

    assert answer == {"batchItemFailures": []}
    assert user_rows(clients.db, project.project_id, "leaving") == {
        "memories": 0, "memory_events": 0, "processed_jobs": 0, "llm_usage": 0}
    assert usage_totals(clients.db, project.project_id).calls == thinking.llm.total()  # paid for, unnamed


def test_one_users_failure_holds_back_only_that_users_later_jobs(clients, project, lambda_context):
    def fail_for_bob(operation, messages):
        text = json.dumps(messages)
        return LLMUnavailable("upstream 503", status=503) if "Oslo" in text else None

    from reverie.llm import OfflineLLM

    reflecting = Swapped(clients, llm=OfflineLLM(fail_when=fail_for_bob))
    ana1 = job(project.project_id, "ana", "I live in Porto.")
    bob1 = job(project.project_id, "bob", "I live in Oslo.")
    ana2 = job(project.project_id, "ana", "I work at Acme.")
    bob2 = job(project.project_id, "bob", "I work at Initech.")
    evt = event(ana1, bob1, ana2, bob2)
    answer = handle_batch(Tier.SEMANTIC, evt, lambda_context, reflecting)

    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    ids = [r["messageId"] for r in evt["Records"]]
    assert failed == {ids[1], ids[3]}  # both of bob's jobs come back, in order; ana's are done
    facts = {m["text"] for m in memories_of(clients.db, project.project_id, "ana")}
    assert facts == {"User lives in Porto", "User works at Acme"}
    assert memories_of(clients.db, project.project_id, "bob") == []
    bob_status = outcome(clients.db, project.project_id, bob2.job_id, Tier.SEMANTIC)
    assert bob_status["status"] == "failed" and "upstream 503" in bob_status["error"]


def test_an_llm_timeout_fails_the_job_with_the_error_then_a_success_replaces_it(clients, project, lambda_context):
    j = job(project.project_id, "u1", "I live in Porto.")
    broken = Swapped(clients, llm=SpyLLM(fail={"extract_semantic": LLMTimeout("timed out after 20s")}))
    answer = _all_failed(handle_batch, Tier.SEMANTIC, event(j, receive_count=1), lambda_context, broken)

    assert answer == "all failed"
    failed = outcome(clients.db, project.project_id, j.job_id, Tier.SEMANTIC)
    assert failed["status"] == "failed"
    assert "timed out after 20s" in failed["error"] and "receive 1 of 5" in failed["error"]

    healthy = Swapped(clients, llm=SpyLLM())
    handle_batch(Tier.SEMANTIC, event(j, receive_count=2), lambda_context, healthy)
    done = outcome(clients.db, project.project_id, j.job_id, Tier.SEMANTIC)
    assert (done["status"], done["added"], done["error"]) == ("done", 1, None)


def _all_failed(handler, tier, evt, context, clients):
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    try:
        answer = handler(tier, evt, context, clients)
    except BatchProcessingError:
        return "all failed"  # Lambda fails the whole batch: every message comes back
    return answer


def test_the_last_receive_records_dead_with_the_last_error(clients, project, lambda_context):
    j = job(project.project_id, "u1", "I live in Porto.")
    broken = Swapped(clients, llm=SpyLLM(fail={"extract_semantic": LLMTimeout("timed out after 20s")}))
    _all_failed(handle_batch, Tier.SEMANTIC, event(j, receive_count=5), lambda_context, broken)

    dead = outcome(clients.db, project.project_id, j.job_id, Tier.SEMANTIC)
    assert dead["status"] == "dead" and "timed out after 20s" in dead["error"] and "dead-letter" in dead["error"]


def test_a_failure_never_overwrites_a_job_already_done(clients, project, lambda_context):
    j = job(project.project_id, "u1", "I live in Porto.")
    handle_batch(Tier.SEMANTIC, event(j), lambda_context, Swapped(clients, llm=SpyLLM()))
    other = job(project.project_id, "u1", "I work at Acme.")
    broken = Swapped(clients, llm=SpyLLM(fail={"extract_semantic": LLMTimeout("timed out")}))
    _all_failed(handle_batch, Tier.SEMANTIC, event(j, other, receive_count=5), lambda_context, broken)

    assert outcome(clients.db, project.project_id, j.job_id, Tier.SEMANTIC)["status"] == "done"
    assert outcome(clients.db, project.project_id, other.job_id, Tier.SEMANTIC)["status"] == "dead"


@pytest.mark.parametrize("body, reason", [
    ("not json at all", "not JSON"),
    ('["a", "list"]', "not a JSON object"),
    ('{"job_id": "j-1", "user_id": "u1", "session_id": "s", "turns": [{"role": "user", "content": "hi"}]}',
     "missing project_id"),
])
def test_a_poison_message_is_refused_at_once_and_nothing_is_stored(clients, project, lambda_context, body, reason,
                                                                   caplog):
    dlq = clients.sqs.create_queue(QueueName=f"poison-{project.project_id}.fifo",
                                   Attributes={"FifoQueue": "true"})["QueueUrl"]
    reflecting = Swapped(clients, llm=SpyLLM(), semantic_dlq_url=dlq)
    answer = handle_batch(Tier.SEMANTIC, {"Records": [record(body, f"{project.project_id}:u1")]}, lambda_context,
                          reflecting)

    assert answer == {"batchItemFailures": []}  # not retried
    assert reflecting.llm.total() == 0
    assert memories_of(clients.db, project.project_id, "u1") == []
    parked = clients.sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in parked] == [body]
    assert reason.split()[-1] in parked[0]["MessageAttributes"]["refused_reason"]["StringValue"]


def test_a_poison_message_naming_its_project_and_job_shows_failed_with_the_reason(clients, project, lambda_context):
    body = json.dumps({"job_id": "bad-1", "project_id": project.project_id, "user_id": "u1", "session_id": "s1",
                       "turns": []})
    dlq = clients.sqs.create_queue(QueueName=f"poison2-{project.project_id}.fifo",
                                   Attributes={"FifoQueue": "true"})["QueueUrl"]
    reflecting = Swapped(clients, llm=SpyLLM(), semantic_dlq_url=dlq)
    handle_batch(Tier.SEMANTIC, {"Records": [record(body, f"{project.project_id}:u1")]}, lambda_context, reflecting)

    refused = outcome(clients.db, project.project_id, "bad-1", Tier.SEMANTIC)
    assert refused["status"] == "failed" and "turns" in refused["error"] and refused["reason"].startswith("refused")
    assert memories_of(clients.db, project.project_id, "u1") == []


def test_a_poison_message_naming_an_unknown_project_leaves_no_row(clients, project, lambda_context):
    body = json.dumps({"job_id": "bad-2", "project_id": "no-such-project", "turns": []})
    dlq = clients.sqs.create_queue(QueueName=f"poison3-{project.project_id}.fifo",
                                   Attributes={"FifoQueue": "true"})["QueueUrl"]
    reflecting = Swapped(clients, llm=SpyLLM(), semantic_dlq_url=dlq)
    handle_batch(Tier.SEMANTIC, {"Records": [record(body, "x:y")]}, lambda_context, reflecting)

    assert outcome(clients.db, "no-such-project", "bad-2", Tier.SEMANTIC) is None


def test_a_job_committed_by_a_concurrent_delivery_meanwhile_is_not_applied_twice(clients, project, lambda_context):
    from reverie.domain.outcomes import TierOutcome
    from reverie.domain.tiers import TierStatus
    from reverie.store import processed_jobs

    j = job(project.project_id, "u1", "I live in Porto.")

    class OtherDeliveryWins(SpyLLM):
        """While this delivery thinks, another delivery of the same job commits its outcome."""

        def structured(self, messages, schema, *, purpose, **options):
            with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
                processed_jobs.write_outcomes(cur, project.project_id, "u1", Tier.SEMANTIC,
                                              {j.job_id: TierOutcome(status=TierStatus.EMPTY, reason="other delivery")})
            return super().structured(messages, schema, purpose=purpose, **options)

    racing = Swapped(clients, llm=OtherDeliveryWins())
    _all_failed(handle_batch, Tier.SEMANTIC, event(j), lambda_context, racing)  # comes back, to be skipped

    assert memories_of(clients.db, project.project_id, "u1") == []
    assert outcome(clients.db, project.project_id, j.job_id, Tier.SEMANTIC)["reason"] == "other delivery"
    again = Swapped(clients, llm=SpyLLM())
    assert handle_batch(Tier.SEMANTIC, event(j, receive_count=2), lambda_context, again) == {"batchItemFailures": []}
    assert again.llm.total() == 0
