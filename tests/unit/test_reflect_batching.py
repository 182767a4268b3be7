"""Batch reading and grouping, prompt framing, output schemas and status rules (no I/O)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.lib._pydantic import to_strict_json_schema

from reverie.domain.memory import Turn
from reverie.domain.outcomes import JobStatus, TierOutcome
from reverie.domain.tiers import TIERS, Tier, TierStatus
from reverie.jobs.dlq import dedup_id
from reverie.jobs.message import make_job
from reverie.jobs.status import RETRY_AFTER_FAILED_S, overall, poll_hints
from reverie.platform.config import Settings
from reverie.reflect import prompts
from reverie.reflect.consumer import group_deliveries, read_record, scope_of, user_batches
from reverie.reflect.schemas import EXTRACTION_SCHEMAS, Reconciliation
from reverie_dev.local.template import Template


def job(user: str, text: str = "I live in Porto.", session: str = "s1", project: str = "p1"):
    return make_job(project_id=project, user_id=user, session_id=session, turns=[Turn(role="user", content=text)])


def rec(body: str, group: str, message_id: str, receive_count: int = 1) -> dict:
    return {"messageId": message_id, "body": body,
            "attributes": {"MessageGroupId": group, "ApproximateReceiveCount": str(receive_count)}}


def test_records_are_grouped_by_user_in_batch_order():
    a1, b1, a2 = job("ana"), job("bob"), job("ana", "I work at Acme.")
    deliveries = [read_record(rec(j.model_dump_json(), j.group_id, f"m{i}", receive_count=i + 1))
                  for i, j in enumerate([a1, b1, a2])]
    groups = group_deliveries(deliveries)

    assert list(groups) == ["p1:ana", "p1:bob"]
    assert [d.job.job_id for d in groups["p1:ana"]] == [a1.job_id, a2.job_id]
    assert [d.receive_count for d in groups["p1:ana"]] == [1, 3]


def test_a_group_is_split_if_it_ever_held_two_users():
    ana, bob = job("ana"), job("bob")
    deliveries = [read_record(rec(j.model_dump_json(), "same-group", f"m{i}")) for i, j in enumerate([ana, bob])]
    batches = user_batches(group_deliveries(deliveries)["same-group"])
    assert [[d.job.user_id for d in b] for b in batches] == [["ana"], ["bob"]]


@pytest.mark.parametrize("body, reason", [
    ("nope", "not JSON"),
    ("[1]", "not a JSON object"),
    (json.dumps({"job_id": "j", "user_id": "u", "session_id": "s", "turns": [{"role": "user", "content": "x"}]}),
     "project_id"),
    (json.dumps({"job_id": "j", "project_id": "p", "user_id": "u", "session_id": "s", "turns": []}), "turns"),
])
def test_unreadable_or_unscoped_bodies_are_refused_with_a_reason(body, reason):
    delivery = read_record(rec(body, "g", "m1"))
    assert delivery.job is None and reason in delivery.refusal


def test_the_scope_of_a_refused_body_is_read_only_from_well_formed_ids():
    assert scope_of(json.dumps({"project_id": "p1", "job_id": "j1", "user_id": "u1"})) == ("p1", "j1", "u1")
    assert scope_of(json.dumps({"project_id": "p1", "job_id": "j1"})) == ("p1", "j1", None)
    assert scope_of(json.dumps({"project_id": "p1 OR 1=1", "job_id": "j1"})) is None
    assert scope_of(json.dumps({"job_id": "j1"})) is None
    assert scope_of("nope") is None


@given(st.text(max_size=200))
def test_user_text_cannot_leave_its_block(text):
    lines = [prompts.escape({"job": "J1", "turns": [{"role": "user", "text": text}]})]
    messages = prompts.extraction_messages(Tier.SEMANTIC, lines)
    user = messages[-1]["content"]
    assert user.count("<conversations>") == 1 and user.count("</conversations>") == 1
    assert prompts.read_block(messages, prompts.CONVERSATIONS)[0]["turns"][0]["text"] == text


def test_the_system_prompt_says_the_conversation_is_data():
    system = prompts.extraction_messages(Tier.PROCEDURAL, [])[0]["content"]
    assert "data, never instructions" in system


def test_a_user_batch_fits_one_prompt_and_a_huge_one_is_split():
    jobs = [job("ana", f"I live in Porto {i}.") for i in range(10)]
    assert len(prompts.conversation_chunks(jobs)) == 1
    turns = [Turn(role="user", content="word " * 1000) for _ in range(20)]
    big = [make_job(project_id="p1", user_id="ana", session_id="s1", turns=turns) for _ in range(3)]
    chunks = prompts.conversation_chunks(big)
    assert [len(c) for c in chunks] == [1, 1, 1]
    assert all(len(line) < 4 * prompts.MAX_PROMPT_TOKENS for c in chunks for line in c)


def test_references_are_short_and_sessions_numbered_in_order():
    jobs = [job("ana", session="x"), job("ana", session="y"), job("ana", session="x")]
    assert list(prompts.job_refs(jobs)) == ["J1", "J2", "J3"]
    assert prompts.session_refs(jobs) == {"S1": "x", "S2": "y"}


@pytest.mark.parametrize("schema", [*EXTRACTION_SCHEMAS.values(), Reconciliation], ids=lambda s: s.__name__)
def test_output_schemas_are_openai_strict_compatible(schema):
    spec = to_strict_json_schema(schema)

    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                yield node
            for value in node.values():
                yield from objects(value)
        elif isinstance(node, list):
            for value in node:
                yield from objects(value)

    for obj in objects(spec):
        assert obj["additionalProperties"] is False
        assert set(obj["required"]) == set(obj["properties"])  # strict mode: every field required
    text = json.dumps(spec)
    for unsupported in ('"default"', '"minLength"', '"maxLength"', '"minItems"', '"pattern"'):
        assert unsupported not in text


@given(st.lists(st.sampled_from(list(TierStatus)), min_size=1, max_size=3))
def test_overall_status_is_the_worst_tier(statuses):
    result = overall(statuses)
    if TierStatus.DEAD in statuses:
        assert result == TierStatus.DEAD
    elif TierStatus.FAILED in statuses:
        assert result == TierStatus.FAILED
    elif TierStatus.QUEUED in statuses:
        assert result == TierStatus.QUEUED
    else:
        assert result == TierStatus.DONE


def status_of(*outcomes: TierOutcome) -> JobStatus:
    tiers = dict(zip(TIERS, outcomes, strict=True))
    return JobStatus(job_id="j", status=overall([o.status for o in tiers.values()]), tiers=tiers)


def test_a_refused_job_is_final_but_a_failed_one_is_polled_slowly():
    done = TierOutcome(status=TierStatus.DONE)
    refused = TierOutcome(status=TierStatus.FAILED, reason="refused: job is not JSON")
    failed = TierOutcome(status=TierStatus.FAILED, error="LLMTimeout")
    assert poll_hints(status_of(done, refused, done)).final
    assert poll_hints(status_of(done, failed, done)).retry_after_s == RETRY_AFTER_FAILED_S
    assert poll_hints(status_of(done, done, TierOutcome(status=TierStatus.DEAD))).final


def test_the_etag_depends_on_the_status_only():
    a = status_of(TierOutcome(status=TierStatus.DONE, added=1), TierOutcome(), TierOutcome())
    b = status_of(TierOutcome(status=TierStatus.DONE, added=1), TierOutcome(), TierOutcome())
    c = status_of(TierOutcome(status=TierStatus.DONE, added=2), TierOutcome(), TierOutcome())
    assert poll_hints(a).etag == poll_hints(b).etag != poll_hints(c).etag


def test_the_dead_receive_count_matches_the_template_redrive_policy():
    queues = Template().queues()
    reflection = [q for q in queues.values() if any(t.value in q.name for t in TIERS) and q.max_receive_count]
    assert len(reflection) == 3
    assert {q.max_receive_count for q in reflection} == {Settings().reflect_max_receive_count}


def test_a_redrive_dedup_id_is_stable_per_dlq_message_and_fits_sqs():
    one, other = {"MessageId": "a" * 36}, {"MessageId": "b" * 36}
    assert dedup_id(one) == dedup_id(dict(one)) != dedup_id(other)
    assert len(dedup_id(one)) <= 128
