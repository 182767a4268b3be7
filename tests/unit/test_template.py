"""template.yaml holds the settings the design promises, and every function has a sample event."""

from pathlib import Path

import pytest

from reverie_dev.local.template import PROJECT_ROOT, Template

T = Template()
FUNCTIONS = T.functions()
QUEUES = T.queues()


def test_every_reflection_tier_has_a_fifo_queue_with_a_fifo_dlq():
    for tier in ("Episodic", "Semantic", "Procedural", "Narrative"):
        queue, dlq = QUEUES[f"{tier}Queue"], QUEUES[f"{tier}DLQ"]
        assert queue.fifo and dlq.fifo
        assert queue.dlq_logical_id == f"{tier}DLQ"
        assert queue.max_receive_count == 5
        assert dlq.retention == 14 * 24 * 3600


@pytest.mark.parametrize("spec", [f for f in FUNCTIONS.values() if f.queue], ids=lambda f: f.logical_id)
def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout(spec):
    assert QUEUES[spec.queue.queue_logical_id].visibility_timeout >= 6 * spec.timeout
    assert spec.queue.report_batch_item_failures


def test_the_topic_fans_out_to_the_three_tier_queues():
    subs = {(t, q) for t, q, raw in T.subscriptions() if raw}
    assert subs == {("ReflectionTopic", f"{t}Queue") for t in ("Episodic", "Semantic", "Procedural")}
    name, fifo = T.topic_names()["ReflectionTopic"]
    assert fifo and name.endswith(".fifo")


def test_schedules_are_weekly_and_every_five_minutes():
    schedules = {s.name: s.expression for f in FUNCTIONS.values() for s in f.schedules}
    assert schedules["health"] == "rate(5 minutes)"
    assert schedules["weekly"].startswith("cron(") and "MON" in schedules["weekly"]


def test_runtime_is_python312_on_arm64():
    assert T.globals["Runtime"] == "python3.12"
    assert T.globals["Architectures"] == ["arm64"]


@pytest.mark.parametrize("spec", list(FUNCTIONS.values()), ids=lambda f: f.logical_id)
def test_every_function_has_code_and_a_sample_event(spec):
    assert spec.app_path.is_file(), spec.app_path
    event = PROJECT_ROOT / "events" / f"{Path(spec.code_uri).name}.json"
    assert event.is_file(), f"no sample event for {spec.logical_id} at {event}"


def test_the_stated_revocation_bound_counts_the_gateways_authorizer_cache():
    from reverie.ops.admin import GATEWAY_AUTH_CACHE_S, revocation_bound_s
    from reverie.platform.config import Settings
    from reverie_dev.local.api_gateway import authorizer_from

    assert authorizer_from(T).ttl_s == GATEWAY_AUTH_CACHE_S  # ReauthorizeEvery
    assert revocation_bound_s(Settings(auth_cache_ttl_s=60)) == 120  # the bound the README and the CLI state
