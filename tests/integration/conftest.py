"""Fixtures of the integration tests: the memory API's handler called as one project's key would call it."""

from __future__ import annotations

import pytest

from tests.support.api import Api
from tests.support.chat import drain_reflection_jobs
from tests.support.functions import load_function
from tests.support.projects import new_project


@pytest.fixture(autouse=True)
def _no_window_left_open(request):
    """A reflection window a test leaves open would be closed by a later test's window sweep, which goes through
    every project's (and the user falling quiet makes a window due within a minute): a test's projects leave none."""
    projects = [request.getfixturevalue(name).project_id for name in ("project", "other_project")
                if name in request.fixturenames]
    clients = request.getfixturevalue("clients") if projects else None
    yield
    for project_id in projects:
        with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM held_jobs WHERE project_id = %s", (project_id,))


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
