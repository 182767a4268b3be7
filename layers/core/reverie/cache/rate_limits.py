"""Rate-limit counters: a fixed window per project and budget, one key each (reverie.cache.keys.rate_limit),
counted with INCR and given an expiry in the same round trip. Every command names one key, so on a cluster
nothing spans slots, and the window's key expires on its own once it is over."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reverie.cache import keys


@dataclass(frozen=True)
class Counted:
    counts: list[int]  # this request included, one per budget, in the order asked
    resets_in_s: float  # until the window ends and the counts start again


def count(valkey, project_id: str, budgets: Sequence[str], *, window_s: int, now: float) -> Counted:
    """Count one request in each of the project's `budgets` for the window `now` falls in."""
    window = int(now // window_s)
    pipe = valkey.pipeline(transaction=False)
    for budget in budgets:
        key = keys.rate_limit(project_id, budget, window)
        pipe.incr(key)
        pipe.expire(key, 2 * window_s)
    replies = pipe.execute()
    return Counted(counts=[int(n) for n in replies[0::2]], resets_in_s=(window + 1) * window_s - now)
