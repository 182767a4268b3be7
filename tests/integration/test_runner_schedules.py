"""The local scheduler's reading of schedule expressions (no I/O), and that it fires what the template says."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from reverie_dev.local.schedules import Cron, Entry, Rate, Scheduler, parse, scheduler_event
from reverie_dev.local.template import Template


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("expression", "seconds"), [
    ("rate(5 minutes)", 300), ("rate(1 minute)", 60), ("rate(2 hours)", 7200), ("rate(1 day)", 86400),
])
def test_rate_expressions(expression, seconds):
    timing = parse(expression)
    assert isinstance(timing, Rate) and timing.seconds == seconds


def test_weekly_cron_of_the_template_fires_monday_at_three_utc():
    weekly = parse("cron(0 3 ? * MON *)")
    assert weekly.next_after(at("2026-11-21T19:00:00")) == at("2026-11-23T03:00:00")  # a Saturday -> Monday
    assert weekly.next_after(at("2026-11-23T03:00:00")) == at("2026-11-30T03:00:00")
    assert weekly.next_after(at("2026-11-23T02:59:30")) == at("2026-11-23T03:00:00")


@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("cron(*/15 * * * ? *)", "2026-01-01T10:07:00", "2026-01-01T10:15:00"),
    ("cron(0 9-17/4 ? * MON-FRI *)", "2026-11-20T17:30:00", "2026-11-23T09:00:00"),  # Friday evening
    ("cron(30 0 1 JAN,JUL ? *)", "2026-02-01T00:00:00", "2026-07-01T00:30:00"),
    ("cron(0 12 ? * 1 *)", "2026-11-21T00:00:00", "2026-11-22T12:00:00"),  # 1 is Sunday, as in AWS
    ("cron(0 0 29 2 ? *)", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
    ("cron(0 8 ? * WED *)", "2026-11-21T00:00:00", "2026-11-25T08:00:00"),
])
def test_cron_expressions(expression, after, expected):
    assert parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize("expression", [
    "rate(0 minutes)", "rate(5 weeks)", "cron(0 3 * * MON *)", "cron(0 3 ? * MON)", "cron(0 3 L * ? *)",
    "cron(0 3 ? * 2#1 *)", "cron(0 3 15W * ? *)", "cron(61 * * * ? *)", "at(2026-01-01T00:00:00)",
])
def test_expressions_the_local_scheduler_cannot_honour_are_refused(expression):
    with pytest.raises(ValueError):
        parse(expression)


def test_every_schedule_of_the_template_is_understood():
    schedules = [s for f in Template().functions().values() for s in f.schedules]
    assert {s.name for s in schedules} == {"weekly", "health", "windows"}
    for schedule in schedules:
        assert isinstance(parse(schedule.expression), Rate | Cron)


def test_scheduler_event_has_the_eventbridge_scheduler_shape():
    event = scheduler_event("health", now=at("2026-11-23T03:00:00"))
    assert event["source"] == "aws.scheduler"
    assert event["detail-type"] == "Scheduled Event"
    assert event["time"] == "2026-11-23T03:00:00Z"
    assert event["resources"] == ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/reverie-health"]


def test_rate_override_fires_every_schedule_on_it():
    fired: list[str] = []
    done = threading.Event()

    def fire(name):
        fired.append(name)
        if len(fired) >= 4:
            done.set()

    entries = [Entry("weekly", "Sweep", "cron(0 3 ? * MON *)"), Entry("health", "Probe", "rate(5 minutes)")]
    scheduler = Scheduler(entries, fire, rate_s=0.05)
    scheduler.start()
    try:
        assert done.wait(5)
    finally:
        scheduler.stop(timeout=5)
    assert {"weekly", "health"} <= set(fired)
    assert not scheduler.is_alive()


def test_schedule_that_cannot_be_read_is_left_out_not_fatal():
    scheduler = Scheduler([Entry("odd", "Fn", "cron(0 3 L * ? *)"), Entry("health", "Probe", "rate(5 minutes)")],
                          lambda name: None)
    assert [e.name for e in scheduler.entries] == ["health"]
