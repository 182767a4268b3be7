"""The Powertools Logger, Tracer and Metrics, made once and shared by every function."""

import threading

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "reverie"
NAMESPACE = "Reverie"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# Powertools keeps one metric set per process and flushes it without a lock: two flushes at once (work after a
# response beside the next invocation, or the local runner's instances, which share a process) can both find it
# full and one then serialises it empty and raises. One flush at a time.
_flush_lock = threading.Lock()
_flush = metrics.provider.flush_metrics


def _flush_one_at_a_time(raise_on_empty_metrics: bool = False) -> None:
    with _flush_lock:
        _flush(raise_on_empty_metrics=raise_on_empty_metrics)


metrics.provider.flush_metrics = _flush_one_at_a_time
