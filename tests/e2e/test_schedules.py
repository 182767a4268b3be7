"""`reverie schedule run`: a schedule's function fired on demand with an EventBridge Scheduler event."""

from __future__ import annotations

import json

import pytest

from reverie_dev import cli

pytestmark = pytest.mark.e2e


def test_schedule_run_health_prints_the_probe_report(stack, capsys):
    assert cli.main(["schedule", "run", "health"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["engines"] == {"postgres": "ok", "valkey": "ok"}
    assert set(report["queues"]) >= {"episodic", "semantic", "procedural", "narrative"}


def test_schedule_fires_its_function_with_a_scheduler_event(stack):
    seen = []

    def record(event, context):
        seen.append((event, context.function_name))
        return {"swept": 0}

    with stack.override_handler("NarrativeSweepFunction", record):
        assert stack.run_schedule("weekly") == {"swept": 0}
    event, function_name = seen[0]
    assert function_name == "NarrativeSweepFunction"
    assert event["source"] == "aws.scheduler"
    assert event["detail-type"] == "Scheduled Event"
    assert event["resources"][0].endswith(":schedule/default/reverie-weekly")


def test_unknown_schedule_is_refused_by_name(stack, capsys):
    assert cli.main(["schedule", "run", "hourly"]) == 2
    assert "no schedule named 'hourly'" in capsys.readouterr().err
