"""Fixtures of the integration tests: the memory API's handler called as one project's key would call it."""

from __future__ import annotations

import pytest

from tests.support.api import Api
from tests.support.chat import drain_reflection_jobs
from tests.support.functions import load_function
from tests.support.projects import new_project


@pytest.fixture(scope="session")
def memory_api(engines):
    """The memory API function's handler, loaded as Lambda loads it."""
    return load_function("MemoryApiFunction")


@pytest.fixture
def api(memory_api, lambda_context, project, clients):
    """The memory API as the test's project calls it; its reflection jobs are taken off the queues after."""
    yield Api(memory_api, lambda_context, project)
    drain_reflection_jobs(clients, project.project_id)


@pytest.fixture
def other_project(clients):
    """A second project, to show that one never sees the other's data."""
    return new_project(clients.db)


@pytest.fixture
def other_api(memory_api, lambda_context, other_project):
    return Api(memory_api, lambda_context, other_project)
