"""Rate limits per project, in two budgets per minute: every request counts in the project's request budget
(RATE_LIMIT_PER_MINUTE), and a request that spends model calls also in the tighter model budget
(RATE_LIMIT_MODEL_PER_MINUTE). Over either: 429 `rate_limited` with Retry-After, and nothing is done.

Fixed one-minute windows counted in Valkey (reverie.cache.rate_limits). The limits protect cost, so they must not
take the API down: when Valkey cannot count, the request goes through (logged, and the RateLimitUnchecked metric),
and this process stops asking Valkey for a few seconds rather than pay its timeout on every request.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from reverie.cache import VALKEY_ERRORS, rate_limits
from reverie.domain.errors import RateLimited
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics

WINDOW_S = 60
REQUESTS = "requests"
MODEL = "model"
# The routes every call of which spends model calls: a reply, an answer, a narrative. POST /v1/memories does
# when it asks for learning (infer=true, the default): see spends_model.
MODEL_ROUTES = frozenset({
    ("POST", "/v1/chat"),
    ("POST", "/v1/memories/ask"),
    ("POST", "/v1/memories/deep-query"),
    ("POST", "/v1/users/<user_id>/narrative/regenerate"),
})
LEARNING_ROUTE = ("POST", "/v1/memories")
# After Valkey failed to count, requests of this process go through unchecked for this long.
UNCHECKED_AFTER_FAILURE_S = 10.0

_lock = threading.Lock()
_unchecked_until: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()  # Valkey client -> until
clock = time.time


def spends_model(method: str, path: str, route_args: Mapping[str, Any]) -> bool:
    """Whether a request to this route (its method and path rule, its validated arguments) spends model calls."""
    if (method.upper(), path) in MODEL_ROUTES:
        return True
    return (method.upper(), path) == LEARNING_ROUTE and any(
        getattr(arg, "infer", False) is True for arg in route_args.values())


def charge(clients, project_id: str, *, requests: bool = True, model: bool = False) -> None:
    """Count one request of the project in its request budget (unless `requests` is false) and, when it spends
    model calls, in its model budget; raise RateLimited when either is spent for this minute."""
    settings = clients.settings
    budgets: dict[str, int] = {}
    if requests and settings.rate_limit_per_minute:
        budgets[REQUESTS] = settings.rate_limit_per_minute
    if model and settings.rate_limit_model_per_minute:
        budgets[MODEL] = settings.rate_limit_model_per_minute
    if not budgets:
        return
    valkey = clients.valkey
    now = clock()
    with _lock:
        if _unchecked_until.get(valkey, 0.0) > now:
            return
    try:
        counted = rate_limits.count(valkey, project_id, list(budgets), window_s=WINDOW_S, now=now)
    except VALKEY_ERRORS as exc:
        with _lock:
            _unchecked_until[valkey] = now + UNCHECKED_AFTER_FAILURE_S
        logger.warning("rate limit not checked: Valkey could not count the request; it goes through",
                       extra={"project_id": project_id, "error": type(exc).__name__})
        metrics.add_metric(name=Metric.RATE_LIMIT_UNCHECKED, unit=MetricUnit.Count, value=1)
        return
    for (budget, limit), used in zip(budgets.items(), counted.counts, strict=True):
        if used > limit:
            retry_after = max(1, math.ceil(counted.resets_in_s))
            logger.info("rate limited", extra={"project_id": project_id, "budget": budget, "limit": limit})
            metrics.add_metric(name=Metric.RATE_LIMITED, unit=MetricUnit.Count, value=1)
            kind = "requests that spend model calls" if budget == MODEL else "requests"
            raise RateLimited(f"the project's limit of {limit} {kind} per minute is spent; retry in {retry_after} s",
                              retry_after_s=retry_after)
