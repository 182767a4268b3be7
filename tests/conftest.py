"""Shared fixtures: the real engines start once per test session; each test gets its own project."""

from __future__ import annotations

import os
import secrets

# Before anything imports Powertools: no X-Ray daemon here, and metrics go to stdout only when asked.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Reverie")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "reverie")

import pytest

from reverie_dev.local.context import LambdaContext


@pytest.fixture(scope="session")
def engines():
    """Valkey, Postgres with pgvector and moto, with the template's topic and queues, migrated by its owner
    (`engines.database_url`). The functions, and `clients.db`, connect as the login role of `engines.app_database_url`,
    which row-level security binds."""
    from reverie.platform import clients as runtime
    from reverie_dev.local import engines as local_engines

    started = local_engines.start()
    saved = dict(os.environ)
    os.environ.update(started.environment())
    runtime.reset()
    yield started
    runtime.reset()
    os.environ.clear()
    os.environ.update(saved)
    started.stop()


@pytest.fixture(scope="session")
def clients(engines):
    from reverie.platform import clients as runtime

    return runtime.clients()


@pytest.fixture
def project(clients):
    """A fresh project and API key, so tests never see each other's data."""
    from reverie.api.auth import issue_key
    from reverie.store.projects import create_project

    project_id = "p-" + secrets.token_hex(4)
    create_project(clients.db, project_id)
    key = issue_key(clients.db, project_id)
    return key


@pytest.fixture
def lambda_context():
    """An invocation with the reflectors' two minutes (a function's work is bounded by what its context has left)."""
    return LambdaContext(timeout_s=120)
