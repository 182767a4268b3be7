"""The health probe calls a tier stalled when jobs keep waiting and the tier writes nothing."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from reverie.cache import keys
from reverie.ops.stalls import find_stalls

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _queues(semantic_visible: int) -> dict:
    return {"episodic": {"queue": {"visible": 0, "in_flight": 0}},
            "semantic": {"queue": {"visible": semantic_visible, "in_flight": 0}},
            "procedural": {"queue": {"visible": 0, "in_flight": 0}}}


@pytest.fixture
def valkey(clients):
    for tier in ("episodic", "semantic", "procedural"):
        clients.valkey.delete(keys.backlog_since(tier))
    return clients.valkey


def test_a_backlog_with_no_writes_becomes_a_stall_after_the_threshold(valkey):
    last = {"episodic": None, "semantic": T0 - timedelta(hours=1), "procedural": None}
    first = find_stalls(valkey, _queues(3), last, stall_after_s=900, now=T0)
    assert first["semantic"]["backlog"] == 3 and not first["semantic"]["stalled"]
    later = find_stalls(valkey, _queues(3), last, stall_after_s=900, now=T0 + timedelta(minutes=16))
    assert later["semantic"]["stalled"]
    assert later["semantic"]["backlog_since"] == T0.isoformat()  # the first sighting is kept, not reset
    assert not later["episodic"]["stalled"] and not later["procedural"]["stalled"]


def test_a_tier_that_keeps_writing_under_a_steady_backlog_is_not_stalled(valkey):
    find_stalls(valkey, _queues(5), {}, stall_after_s=900, now=T0)
    busy = {"semantic": T0 + timedelta(minutes=15)}
    report = find_stalls(valkey, _queues(5), busy, stall_after_s=900, now=T0 + timedelta(minutes=20))
    assert not report["semantic"]["stalled"]


def test_an_emptied_queue_clears_the_backlog_clock(valkey):
    find_stalls(valkey, _queues(2), {}, stall_after_s=900, now=T0)
    find_stalls(valkey, _queues(0), {}, stall_after_s=900, now=T0 + timedelta(minutes=5))
    report = find_stalls(valkey, _queues(2), {}, stall_after_s=900, now=T0 + timedelta(minutes=20))
    assert report["semantic"]["backlog_since"] == (T0 + timedelta(minutes=20)).isoformat()
    assert not report["semantic"]["stalled"]


def test_the_probe_reports_stalls_per_tier(clients, valkey):
    from reverie.ops.health import probe

    report = probe(clients)
    json.dumps(report)  # a Lambda answer: plain JSON only
    assert set(report["stalls"]) == {"episodic", "semantic", "procedural"}
    assert all(isinstance(s["stalled"], bool) for s in report["stalls"].values())
