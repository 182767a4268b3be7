"""Status reports: a project sees its own figures only (its outbox, its windows, its failures, its last writes);
operators see every project's (the admin function's ops.status, behind `reverie status`)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

import pytest

from reverie.cache import outbox
from reverie.domain.tiers import Tier, TierStatus
from reverie.ops.admin import handle
from reverie.ops.status import operator_status, project_status
from reverie.store import held_jobs, processed_jobs
from tests.support.projects import new_project
from tests.support.reflect import job


class Work:
    """What one project has waiting: jobs parked in the outbox, held in semantic windows, failed and dead."""

    def __init__(self, clients, *, parked: int, held: int, failed: int, dead: int):
        self.clients = clients
        self.project_id = new_project(clients.db, "status").project_id
        self.user_id = "u-" + secrets.token_hex(3)
        self.parked = [job(self.project_id, self.user_id, f"parked {i}") for i in range(parked)]
        for j in self.parked:
            outbox.park(clients.valkey, self.project_id, self.user_id, j.job_id, j.model_dump_json())
        with clients.db.transaction(self.project_id) as conn, conn.cursor() as cur:
            held_jobs.hold(cur, self.project_id, self.user_id, Tier.SEMANTIC,
                           [(j.job_id, j.model_dump(mode="json"))
                            for j in (job(self.project_id, self.user_id, f"held {i}") for i in range(held))])
            outcomes = [TierStatus.FAILED] * failed + [TierStatus.DEAD] * dead
            processed_jobs.write_failures(cur, self.project_id, self.user_id, Tier.EPISODIC, {
                f"j-{i}": (status, "the model answered 500", datetime.now(UTC)) for i, status in enumerate(outcomes)})

    def clean(self) -> None:
        for j in self.parked:
            outbox.remove(self.clients.valkey, self.project_id, self.user_id, j.job_id)
        with self.clients.db.transaction(self.project_id) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM held_jobs WHERE project_id = %s", (self.project_id,))
            cur.execute("DELETE FROM processed_jobs WHERE project_id = %s", (self.project_id,))


@pytest.fixture
def two_projects(clients):
    a = Work(clients, parked=2, held=1, failed=1, dead=0)
    b = Work(clients, parked=1, held=3, failed=0, dead=2)
    yield a, b
    a.clean()
    b.clean()


def test_each_project_sees_only_its_own_figures(clients, two_projects):
    a, b = two_projects
    mine, theirs = project_status(clients, a.project_id), project_status(clients, b.project_id)

    assert mine.status == "ok" and mine.project_id == a.project_id
    assert (mine.outbox.users, mine.outbox.jobs) == (1, 2)
    assert mine.held[Tier.SEMANTIC].jobs == 1 and mine.held[Tier.EPISODIC].jobs == 0
    assert (mine.failed_24h[Tier.EPISODIC].failed, mine.failed_24h[Tier.EPISODIC].dead) == (1, 0)
    assert mine.last_write[Tier.EPISODIC].status == "failed" and mine.last_write[Tier.SEMANTIC] is None

    assert (theirs.outbox.users, theirs.outbox.jobs) == (1, 1)
    assert theirs.held[Tier.SEMANTIC].jobs == 3
    assert (theirs.failed_24h[Tier.EPISODIC].failed, theirs.failed_24h[Tier.EPISODIC].dead) == (0, 2)
    # nothing of one shows in the other's report, and no shared queue depth shows in either
    for report, other in ((mine, b), (theirs, a)):
        text = report.model_dump_json()
        assert other.project_id not in text and other.user_id not in text and "queues" not in text


def test_a_project_with_nothing_waiting_reports_zeros(clients):
    report = project_status(clients, new_project(clients.db, "quiet").project_id)
    assert report.outbox.jobs == 0
    assert all(report.held[t].jobs == 0 and report.failed_24h[t].failed == 0 for t in Tier)
    assert all(report.last_write[t] is None for t in Tier)


def test_the_operator_view_sees_every_project(clients, two_projects):
    a, b = two_projects
    report = operator_status(clients)

    assert set(report["queues"]) == {"episodic", "semantic", "procedural", "narrative"}
    assert report["outbox"]["jobs"] >= 3 and report["held"]["semantic"]["jobs"] >= 4
    assert report["failed_24h"]["episodic"]["failed"] >= 1 and report["failed_24h"]["episodic"]["dead"] >= 2
    assert report["projects"][a.project_id]["outbox"]["jobs"] == 2
    assert report["projects"][a.project_id]["held"]["jobs"] == 1
    assert report["projects"][b.project_id]["outbox"]["jobs"] == 1
    assert report["projects"][b.project_id]["held"]["jobs"] == 3
    ranked = list(report["projects"])
    assert ranked.index(b.project_id) < ranked.index(a.project_id)  # the most waiting first


def test_the_admin_function_answers_the_operator_view_as_json(clients, two_projects):
    a, b = two_projects
    answer = handle(clients, {"action": "ops.status"})
    assert json.loads(json.dumps(answer)) == answer  # what Lambda can return
    assert {a.project_id, b.project_id} <= set(answer["projects"])


def test_the_project_view_is_all_the_http_api_shows(clients, two_projects):
    from reverie_dev.local.context import LambdaContext
    from tests.support.api import Api
    from tests.support.functions import load_function

    a, b = two_projects

    class Key:
        project_id, key = a.project_id, "unused: the event carries the authorizer's answer"

    status, body, _ = Api(load_function("MemoryApiFunction"), LambdaContext(), Key)("GET", "/v1/status")
    assert status == 200 and body["project_id"] == a.project_id and body["outbox"]["jobs"] == 2
    assert "queues" not in body and "projects" not in body and b.project_id not in json.dumps(body)
