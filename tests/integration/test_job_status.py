"""Job status per tier from the real stores: queued (Valkey marker), done, empty, failed, dead; polling hints."""

from __future__ import annotations

import pytest

from reverie.cache import job_markers
from reverie.domain.errors import NotFound
from reverie.domain.tiers import TIERS, Tier, TierStatus
from reverie.jobs.status import RETRY_AFTER_QUEUED_S, job_status, poll_hints
from reverie.llm import LLMTimeout
from reverie.reflect.consumer import handle_batch
from tests.support.clients import Swapped
from tests.support.llm import SpyLLM
from tests.support.reflect import event, job

pytestmark = pytest.mark.integration


def test_a_published_job_is_queued_in_every_tier(clients, project):
    j = job(project.project_id, "u1", "I live in Porto.")
    job_markers.remember(clients.valkey, j)

    status = job_status(clients, project.project_id, j.job_id)

    assert status.status == TierStatus.QUEUED
    assert {t: o.status for t, o in status.tiers.items()} == {t: TierStatus.QUEUED for t in TIERS}
    hints = poll_hints(status)
    assert hints.retry_after_s == RETRY_AFTER_QUEUED_S and hints.headers()["Retry-After"] == "10"


def test_an_unknown_job_is_not_found(clients, project):
    with pytest.raises(NotFound):
        job_status(clients, project.project_id, "never-published")


def test_a_job_of_another_project_is_not_found(clients, project, lambda_context):
    j = job(project.project_id, "u1", "I live in Porto.")
    handle_batch(Tier.SEMANTIC, event(j), lambda_context, Swapped(clients, llm=SpyLLM()))

    with pytest.raises(NotFound):
        job_status(clients, "some-other-project", j.job_id)


def test_a_learned_job_is_done_with_counts_and_final(clients, project, lambda_context):
    j = job(project.project_id, "u1", "I live in Porto.", "What time is it?")
    job_markers.remember(clients.valkey, j)
    reflecting = Swapped(clients, llm=SpyLLM())
    handle_batch(Tier.SEMANTIC, event(j), lambda_context, reflecting)

    partly = job_status(clients, project.project_id, j.job_id)
    assert partly.status == TierStatus.QUEUED
    assert partly.tiers[Tier.SEMANTIC].status == TierStatus.DONE and partly.tiers[Tier.SEMANTIC].added == 1

    for tier in (Tier.EPISODIC, Tier.PROCEDURAL):
        handle_batch(tier, event(j), lambda_context, reflecting)
    status = job_status(clients, project.project_id, j.job_id)

    assert status.status == TierStatus.DONE
    assert status.tiers[Tier.PROCEDURAL].status == TierStatus.EMPTY
    assert "no preferences" in status.tiers[Tier.PROCEDURAL].reason
    hints = poll_hints(status)
    assert hints.final and "Retry-After" not in hints.headers()
    assert poll_hints(partly).etag != hints.etag


def test_the_etag_is_stable_until_the_status_changes(clients, project):
    j = job(project.project_id, "u1", "I live in Porto.")
    job_markers.remember(clients.valkey, j)
    first = poll_hints(job_status(clients, project.project_id, j.job_id))
    second = poll_hints(job_status(clients, project.project_id, j.job_id))

    assert first.etag == second.etag
    assert second.matches(first.etag) and second.matches(f"W/{first.etag}, \"other\"")
    assert not second.matches('"something-else"') and not second.matches(None)


def test_a_failed_tier_makes_the_job_failed_and_a_dead_one_dead(clients, project, lambda_context):
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    j = job(project.project_id, "u1", "I live in Porto and I always take the train.")  # a fact and a habit
    job_markers.remember(clients.valkey, j)
    broken = Swapped(clients, llm=SpyLLM(fail={"extract_semantic": LLMTimeout("timed out after 20s"),
                                                    "extract_procedural": LLMTimeout("timed out after 20s")}))
    with pytest.raises(BatchProcessingError):
        handle_batch(Tier.SEMANTIC, event(j, receive_count=2), lambda_context, broken)

    failed = job_status(clients, project.project_id, j.job_id)
    assert failed.status == TierStatus.FAILED
    assert "timed out after 20s" in failed.tiers[Tier.SEMANTIC].error
    assert poll_hints(failed).retry_after_s is not None

    with pytest.raises(BatchProcessingError):
        handle_batch(Tier.PROCEDURAL, event(j, receive_count=5), lambda_context, broken)
    dead = job_status(clients, project.project_id, j.job_id)
    assert dead.status == TierStatus.DEAD
    assert dead.tiers[Tier.PROCEDURAL].status == TierStatus.DEAD
