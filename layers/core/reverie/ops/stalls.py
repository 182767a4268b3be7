"""Stall detection for the health probe: jobs keep waiting in a tier's queue, yet the tier writes nothing.

Everything looks busy and nothing lands: jobs flow in, yet nothing is written. The moment a backlog was first
seen is kept in Valkey (losing it only delays the alarm by one threshold).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reverie.cache import keys
from reverie.domain.tiers import TIERS


def find_stalls(
    valkey, queues: dict[str, Any], last_written: dict[str, datetime | None], *, stall_after_s: int,
    now: datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """Per tier: {backlog, backlog_since, last_write, stalled}. A tier is stalled when its queue has held
    jobs for longer than `stall_after_s` and it has recorded no outcome since the backlog began."""
    now = now or datetime.now(UTC)
    report = {}
    for tier in (t.value for t in TIERS):
        counts = (queues.get(tier) or {}).get("queue") or {}
        backlog = int(counts.get("visible", 0)) + int(counts.get("in_flight", 0))
        key = keys.backlog_since(tier)
        if backlog == 0:
            valkey.delete(key)
            since = None
        else:
            valkey.set(key, now.isoformat(), nx=True)
            raw = valkey.get(key)
            since = datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)
        last = last_written.get(tier)
        stalled = bool(
            since is not None
            and (now - since).total_seconds() > stall_after_s
            and (last is None or last < since or (now - last).total_seconds() > stall_after_s)
        )
        # ISO strings: the probe's answer is a Lambda response, which must be plain JSON.
        report[tier] = {"backlog": backlog, "backlog_since": since.isoformat() if since else None,
                        "last_write": last.isoformat() if last else None, "stalled": stalled}
    return report
