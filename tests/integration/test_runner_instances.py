"""The local runner's function instances: one invocation per instance at a time, each instance its own import of
the handler module, more instances up to the function's concurrency, and waiting beyond it, as Lambda does."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from reverie_dev.local.functions import DEFAULT_CONCURRENCY, FunctionError, LocalFunction
from reverie_dev.local.template import FunctionSpec, Template

# A handler whose module keeps what it serves in module state, as a resolver keeps its current event: two
# invocations on one instance at once would see each other's.
APP = """
import time

SERVING = []
INSTANCE = object()


def handler(event, context):
    SERVING.append(event["n"])
    time.sleep(event.get("sleep", 0))
    seen = list(SERVING)
    SERVING.clear()
    return {"n": event["n"], "seen": seen, "instance": id(INSTANCE)}
"""


def function(tmp_path, concurrency: int | None = None, source: str = APP) -> LocalFunction:
    (tmp_path / "app.py").write_text(source)
    spec = FunctionSpec(logical_id="Fn", code_uri=str(tmp_path), handler="app.handler", timeout=30,
                        concurrency=concurrency)
    return LocalFunction(spec)


def test_concurrent_invocations_never_share_an_instance(tmp_path):
    fn = function(tmp_path, concurrency=4)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: fn.invoke({"n": n, "sleep": 0.02}), range(40)))
    assert all(a["seen"] == [a["n"]] for a in answers), "an instance served two invocations at once"
    assert len({a["instance"] for a in answers}) == fn.instances == 4


def test_instances_are_made_only_when_needed_and_the_warmest_serves_next(tmp_path):
    fn = function(tmp_path, concurrency=4)
    answers = [fn.invoke({"n": n}) for n in range(5)]
    assert fn.instances == 1 and len({a["instance"] for a in answers}) == 1


def test_beyond_its_concurrency_an_invocation_waits_for_a_free_instance(tmp_path):
    fn = function(tmp_path, concurrency=1)
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda n: fn.invoke({"n": n, "sleep": 0.1}), range(3)))
    assert time.monotonic() - started >= 0.3  # one at a time
    assert fn.instances == 1 and all(a["seen"] == [a["n"]] for a in answers)


def test_concurrency_comes_from_the_template():
    functions = Template().functions()
    assert functions["ChatFunction"].concurrency == 100  # ReservedConcurrentExecutions: !Ref ChatConcurrency
    assert functions["EpisodicReflectorFunction"].concurrency == 5  # ScalingConfig.MaximumConcurrency
    assert functions["AdminFunction"].concurrency is None


def test_a_function_without_a_concurrency_gets_the_default(tmp_path):
    assert function(tmp_path).concurrency == DEFAULT_CONCURRENCY


def test_an_override_runs_on_every_instance_and_can_call_the_functions_own_code(tmp_path):
    fn = function(tmp_path, concurrency=3)
    own = fn.handler
    calls = []
    lock = threading.Lock()

    def counting(event, context):
        with lock:
            calls.append(event["n"])
        return {**own(event, context), "counted": True}

    fn.handler = counting
    try:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda n: fn.invoke({"n": n, "sleep": 0.02}), range(12)))
    finally:
        fn.handler = own
    assert sorted(calls) == list(range(12)) and all(a["counted"] and a["seen"] == [a["n"]] for a in answers)
    assert "counted" not in fn.invoke({"n": 99})


def test_an_instance_that_fails_to_start_is_an_init_error_and_frees_its_place(tmp_path):
    fn = function(tmp_path, concurrency=2)
    own = fn.handler
    hold = threading.Event()
    fn.handler = lambda event, context: hold.wait(5) and {"n": event["n"]}
    (tmp_path / "app.py").write_text("raise RuntimeError('no database')\n")
    try:
        with ThreadPoolExecutor(2) as pool:
            busy = pool.submit(fn.invoke, {"n": 1})  # takes the one instance started at load
            time.sleep(0.05)
            with pytest.raises(FunctionError) as failed:
                fn.invoke({"n": 2})  # needs a second instance: its import fails
            hold.set()
            assert busy.result() == {"n": 1}
    finally:
        fn.handler = own
    assert failed.value.error_type == "Runtime.ImportModuleError" and "no database" in failed.value.message
    assert fn.instances == 1
