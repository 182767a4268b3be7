"""The cost ledger: every model call of a reflection is recorded with its tier, model, tokens and jobs."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from reverie.domain.tiers import TIERS, Tier
from reverie.llm import LLMUnavailable
from reverie.ops.ledger import job_usage, usage_totals
from reverie.reflect.consumer import handle_batch
from tests.support.clients import Swapped
from tests.support.llm import SpyLLM
from tests.support.reflect import event, job

pytestmark = pytest.mark.integration


def test_every_call_of_a_user_batch_is_in_the_ledger_with_its_tier_and_jobs(clients, project, lambda_context):
    llm = SpyLLM()
    reflecting = Swapped(clients, llm=llm)
    jobs = [job(project.project_id, "ana", f"I have a cat named Tom{i} and I always feed him at 7.") for i in range(3)]
    for tier in TIERS:
        handle_batch(tier, event(*jobs), lambda_context, reflecting)

    totals = usage_totals(clients.db, project.project_id)
    assert totals.calls == llm.total()
    assert totals.prompt_tokens > 0 and totals.completion_tokens > 0
    assert totals.total_tokens == totals.prompt_tokens + totals.completion_tokens
    assert set(totals.by_tier) == {t.value for t in TIERS}
    assert {p: line.calls for p, line in totals.by_purpose.items()} == dict(llm.calls)
    assert totals.by_purpose["extract_semantic"].calls == 1
    assert set(totals.by_model) == {"offline-chat", "offline-hash-embed-v1"}

    usage = job_usage(clients.db, project.project_id, jobs[1].job_id)
    assert len(usage) == llm.total()
    assert {u["shared_by"] for u in usage} == {3}  # each call served the three jobs together


def test_totals_are_per_project_and_per_user(clients, project, lambda_context):
    reflecting = Swapped(clients, llm=SpyLLM())
    handle_batch(Tier.SEMANTIC, event(job(project.project_id, "ana", "I live in Porto.")), lambda_context, reflecting)
    handle_batch(Tier.SEMANTIC, event(job(project.project_id, "bob", "I live in Oslo.")), lambda_context, reflecting)

    everyone = usage_totals(clients.db, project.project_id)
    ana = usage_totals(clients.db, project.project_id, "ana")
    bob = usage_totals(clients.db, project.project_id, "bob")
    assert ana.calls + bob.calls == everyone.calls and ana.calls > 0
    assert ana.prompt_tokens + bob.prompt_tokens == everyone.prompt_tokens
    assert usage_totals(clients.db, "another-project").calls == 0


def test_a_failed_reflection_still_records_the_calls_it_paid_for(clients, project, lambda_context):
    j = job(project.project_id, "ana", "I live in Porto.")
    broken = Swapped(clients, llm=SpyLLM(fail={"embed": LLMUnavailable("503", status=503)}))
    with pytest.raises(BatchProcessingError):
        handle_batch(Tier.SEMANTIC, event(j), lambda_context, broken)

    totals = usage_totals(clients.db, project.project_id, "ana")
    assert totals.by_purpose["extract_semantic"].calls == 1
    assert "embed" not in totals.by_purpose  # the failed call returned no usage


def test_a_redelivered_job_adds_nothing_to_the_ledger(clients, project, lambda_context):
    reflecting = Swapped(clients, llm=SpyLLM())
    j = job(project.project_id, "ana", "I live in Porto.")
    handle_batch(Tier.SEMANTIC, event(j), lambda_context, reflecting)
    before = usage_totals(clients.db, project.project_id)
    handle_batch(Tier.SEMANTIC, event(j, receive_count=2), lambda_context, reflecting)

    assert usage_totals(clients.db, project.project_id) == before
