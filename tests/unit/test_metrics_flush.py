"""Metrics flushed from several threads at once (work after a response beside an invocation, the local runner's
instances in one process): each flush sees the set whole or empty, never emptied under it."""

from __future__ import annotations

import threading
import time

from aws_lambda_powertools.metrics import MetricUnit

from reverie.platform.observability import metrics


def test_concurrent_flushes_never_serialise_a_set_another_emptied(capsys, monkeypatch):
    provider = metrics.provider
    serialise = provider.serialize_metric_set

    def slow_serialise(*args, **kwargs):
        time.sleep(0.005)  # a wide window between a flush's "is it empty?" and its serialising
        return serialise(*args, **kwargs)

    monkeypatch.setattr(provider, "serialize_metric_set", slow_serialise)
    failures: list[BaseException] = []
    for _ in range(20):
        metrics.add_metric(name="FlushRace", unit=MetricUnit.Count, value=1)
        start = threading.Barrier(4)

        def flush(start: threading.Barrier = start) -> None:
            start.wait()
            try:
                metrics.flush_metrics()
            except BaseException as exc:  # any failure is the finding
                failures.append(exc)

        threads = [threading.Thread(target=flush) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    # Each round's one metric went out exactly once.
    assert capsys.readouterr().out.count('"FlushRace":[1.0]') == 20
