"""The local stack for the e2e tests: the runner `make dev` uses, on a free port and a throwaway data dir.

Package scope: it starts once for tests/e2e and stops before other test folders run, so its engines and
environment never overlap the integration tests' own.
"""

from __future__ import annotations

import os

import httpx
import pytest

from reverie_dev.local.runner import LocalStack
from reverie_dev.local.template import Template
from tests.support.aws_calls import AwsCalls


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    """The running LocalStack: .base_url, .api_key, .project_id, .engines, .clients, .pollers, .functions,
    .invoke(), .run_schedule(), and .override_handler(function, handler) to swap one function's code.

    Failed queue messages are retried at once (retry delay 0), so retries and redrives take milliseconds.
    """
    # Engine URLs left in the environment by other test folders (run first when chosen on the command line)
    # would make the stack reuse those engines and their queues: the e2e stack always starts its own.
    inherited = {k: os.environ.pop(k) for k in ("DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "AWS_ENDPOINT_URL")
                 if k in os.environ}
    local = LocalStack(retry_delay_s=0, run_schedules=False)
    local.start(tmp_path_factory.mktemp("reverie-local"), persist=False, port=0)
    # moto keeps its state per process, so a moto server started earlier in this run shares its queues with
    # ours: start from empty queues, as a fresh `make dev` does.
    sqs = local.client("sqs")
    for spec in Template().queues().values():
        sqs.purge_queue(QueueUrl=local.engines.refs[spec.logical_id])
    local.aws_calls = AwsCalls().install()
    yield local
    local.aws_calls.uninstall()
    local.stop()
    os.environ.update(inherited)


@pytest.fixture(autouse=True)
def calls_the_roles_allow(request):
    """Every e2e test also checks that what the functions called in AWS is what their roles allow."""
    yield
    if "stack" in request.fixturenames:
        stack = request.getfixturevalue("stack")
        assert stack.aws_calls.not_allowed() == [], "a function called AWS beyond reverie.platform.permissions"


@pytest.fixture
def api(stack):
    """An HTTP client on the stack's API, with the dev project's key."""
    with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {stack.api_key}"},
                      timeout=30) as client:
        yield client
