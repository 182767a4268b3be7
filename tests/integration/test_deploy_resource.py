"""The MigrateOnDeploy custom resource always answers CloudFormation, and in time: a local HTTP server stands in
for the presigned S3 URL and records what CloudFormation would read."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import pytest

from reverie.platform import deploy
from reverie.platform.clients import Clients
from reverie.store import Database, current_version, latest_version
from reverie.store import migrations as store_migrations
from reverie_dev.local.context import LambdaContext
from tests.support.functions import functions, load_function

STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/reverie/0f3e5a40-0000-0000-0000-000000000000"


@dataclass
class Answer:
    method: str
    content_type: str | None
    body: dict


@dataclass
class PresignedUrl:
    """An HTTP server answering PUTs with the scripted statuses (then 200), recording each request."""

    statuses: list[int] = field(default_factory=list)
    hang_s: float = 0.0
    answers: list[Answer] = field(default_factory=list)
    url: str = ""

    @property
    def body(self) -> dict:
        assert len(self.answers) >= 1, "CloudFormation was not answered"
        return self.answers[-1].body


@pytest.fixture
def s3():
    presigned = PresignedUrl()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):  # the name http.server calls
            body = self.rfile.read(int(self.headers["Content-Length"]))
            presigned.answers.append(Answer("PUT", self.headers.get("Content-Type"), json.loads(body)))
            if presigned.hang_s:
                time.sleep(presigned.hang_s)
            status = presigned.statuses.pop(0) if presigned.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    presigned.url = f"http://127.0.0.1:{server.server_address[1]}/cfn-response?X-Amz-Signature=abc"
    yield presigned
    server.shutdown()
    server.server_close()


def cfn_event(request_type: str, url: str, physical_id: str | None = None) -> dict:
    event = {
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:reverie-MigrateFunction",
        "ResponseURL": url,
        "StackId": STACK_ID,
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "MigrateOnDeploy",
        "ResourceType": "Custom::Migrate",
        "ResourceProperties": {"CodeVersion": "arn:aws:lambda:us-east-1:123456789012:layer:reverie-core:7"},
    }
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return event


def context(remaining_s: float = 300.0) -> LambdaContext:
    return LambdaContext(function_name="reverie-MigrateFunction", timeout_s=remaining_s,
                         log_stream_name="2025/01/01/[$LATEST]abc")


def assert_answers(body: dict, event: dict, status: str) -> None:
    assert body["Status"] == status, body["Reason"]
    assert body["RequestId"] == event["RequestId"]
    assert body["StackId"] == event["StackId"]
    assert body["LogicalResourceId"] == "MigrateOnDeploy"
    assert body["PhysicalResourceId"] == event.get("PhysicalResourceId", deploy.PHYSICAL_ID)
    assert "[$LATEST]abc" in body["Reason"]  # where to read more


@pytest.fixture
def empty_database(engines):
    """A new, empty database and the clients that point at it."""
    name = "deploy_" + uuid.uuid4().hex[:8]
    admin = psycopg2.connect(engines.database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    url = psycopg2.extensions.make_dsn(engines.database_url, dbname=name)
    yield url
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def clients_with(base: Clients, **settings) -> Clients:
    # The owner's URL would win over these for migrating: the database given here is the one to migrate.
    return Clients(base.settings.model_copy(update={"database_owner_url": None, **settings}))


@pytest.fixture
def migration_lock(engines):
    """Another migrator holding the migrations' advisory lock."""
    holder = psycopg2.connect(engines.database_url)
    holder.autocommit = True
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (store_migrations._LOCK_KEY,))
    yield
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock(%s)", (store_migrations._LOCK_KEY,))
    holder.close()


# ---------------------------------------------------------------------------------------------- answered SUCCESS


def test_create_through_the_function_answers_success_on_a_current_schema(clients, s3):
    event = cfn_event("Create", s3.url)
    load_function("MigrateFunction")(event, context())
    assert_answers(s3.body, event, "SUCCESS")
    assert s3.body["Reason"].startswith("the schema is current")
    assert s3.body["Data"] == {"applied": ""}
    assert s3.answers[0].method == "PUT" and s3.answers[0].content_type == ""  # as the URL was signed


def test_create_on_an_empty_database_applies_every_migration_and_says_which(clients, s3, empty_database):
    event = cfn_event("Create", s3.url)
    deploy.handle_custom_resource(event, context(), lambda: clients_with(clients, database_url=empty_database))
    assert_answers(s3.body, event, "SUCCESS")
    names = [f"{m.version:04d}_{m.name}" for m in store_migrations.available()]
    assert s3.body["Data"]["applied"] == ",".join(names)
    assert names[0] in s3.body["Reason"]
    db = Database(empty_database, max_connections=1)
    assert current_version(db) == latest_version()
    db.close()


def test_update_keeps_the_physical_id(clients, s3):
    event = cfn_event("Update", s3.url, physical_id="reverie-schema")
    deploy.handle_custom_resource(event, context(), lambda: clients)
    assert_answers(s3.body, event, "SUCCESS")


def test_delete_touches_nothing_and_answers_success_at_once(s3):
    asked = []
    event = cfn_event("Delete", s3.url, physical_id="reverie-schema")
    started = time.monotonic()
    deploy.handle_custom_resource(event, context(), lambda: asked.append("clients"))
    assert time.monotonic() - started < 1.0
    assert_answers(s3.body, event, "SUCCESS")
    assert asked == []  # no clients, no database, no secret


def test_the_put_is_retried_when_s3_fails(clients, s3):
    s3.statuses = [503, 500]
    event = cfn_event("Update", s3.url, physical_id="reverie-schema")
    deploy.handle_custom_resource(event, context(), lambda: clients)
    assert [a.body["Status"] for a in s3.answers] == ["SUCCESS"] * 3
    assert_answers(s3.body, event, "SUCCESS")


# ----------------------------------------------------------------------------------------------- answered FAILED


def test_a_migration_that_raises_is_answered_failed_with_its_error_and_nothing_applied(
        clients, s3, empty_database, monkeypatch):
    broken = store_migrations.Migration(latest_version() + 1, "broken", "SELECT * FROM no_such_table")
    real = store_migrations.available()
    monkeypatch.setattr(store_migrations, "available", lambda: [*real, broken])
    event = cfn_event("Create", s3.url)
    answer = deploy.handle_custom_resource(event, context(), lambda: clients_with(clients, database_url=empty_database))
    assert_answers(s3.body, event, "FAILED")
    assert "migration failed" in s3.body["Reason"] and 'relation "no_such_table" does not exist' in s3.body["Reason"]
    assert answer["status"] == "FAILED"
    db = Database(empty_database, max_connections=1)
    assert current_version(db) == 0  # one transaction: none of it is applied
    db.close()


def test_an_unreachable_database_is_answered_failed(clients, s3):
    event = cfn_event("Create", s3.url)
    down = "postgresql://reverie@127.0.0.1:1/reverie"
    deploy.handle_custom_resource(event, context(), lambda: clients_with(clients, database_url=down))
    assert_answers(s3.body, event, "FAILED")
    assert "the database is unreachable" in s3.body["Reason"]


def test_clients_that_cannot_be_made_are_answered_failed(clients, s3):
    event = cfn_event("Create", s3.url)
    unset = clients_with(clients, database_url=None, database_host=None, database_secret_arn=None)
    deploy.handle_custom_resource(event, context(), lambda: unset)
    assert_answers(s3.body, event, "FAILED")
    assert "DATABASE_HOST with DATABASE_SECRET_ARN" in s3.body["Reason"]


def test_a_migration_waiting_on_a_lock_fails_fast_naming_the_lock_wait(clients, s3, migration_lock):
    event = cfn_event("Update", s3.url, physical_id="reverie-schema")
    started = time.monotonic()
    deploy.handle_custom_resource(event, context(), lambda: clients_with(clients, migrate_lock_timeout_s=0.5))
    assert time.monotonic() - started < 5
    assert_answers(s3.body, event, "FAILED")
    assert "waited more than 0.5 s for a lock (lock_timeout)" in s3.body["Reason"]
    assert "another migration may be running" in s3.body["Reason"]


def test_a_migration_that_would_outrun_the_function_is_answered_failed_before_lambda_ends_it(
        clients, s3, migration_lock):
    # 2 s for the migration: the lock (held elsewhere) is not given within it, the default lock_timeout is 30 s.
    remaining = deploy.ANSWER_RESERVE_S + 2
    event = cfn_event("Update", s3.url, physical_id="reverie-schema")
    started = time.monotonic()
    deploy.handle_custom_resource(event, context(remaining), lambda: clients)
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 4, elapsed  # answered once the budget ran out, long before the function's end
    assert_answers(s3.body, event, "FAILED")
    # Whichever comes first: the budget, or the lock_timeout capped at the budget.
    reason = s3.body["Reason"]
    assert "did not finish within its budget of 2.0 s" in reason or "waited more than 2 s for a lock" in reason


def test_a_migration_stuck_elsewhere_is_answered_failed_when_its_budget_runs_out(s3):
    stuck = threading.Event()  # e.g. a secret read with no route to Secrets Manager

    def clients():
        stuck.wait(30)
        raise AssertionError("unreachable")

    event = cfn_event("Create", s3.url)
    started = time.monotonic()
    deploy.handle_custom_resource(event, context(deploy.ANSWER_RESERVE_S + 1.5), clients)
    stuck.set()
    assert time.monotonic() - started < 3
    assert_answers(s3.body, event, "FAILED")
    assert "did not finish within its budget of 1.5 s" in s3.body["Reason"]


def test_too_little_time_to_migrate_is_answered_failed_at_once(s3):
    event = cfn_event("Create", s3.url)
    deploy.handle_custom_resource(event, context(deploy.ANSWER_RESERVE_S), lambda: None)
    assert_answers(s3.body, event, "FAILED")
    assert "too little to migrate" in s3.body["Reason"]


# ---------------------------------------------------------------------------------------------- when S3 is not there


def test_no_route_to_s3_fails_the_invocation_naming_the_endpoint(clients, monkeypatch):
    monkeypatch.setattr(deploy, "PUT_TIMEOUT_S", 0.5)
    event = cfn_event("Delete", "http://127.0.0.1:1/cfn-response", physical_id="reverie-schema")
    with pytest.raises(RuntimeError, match="S3 gateway endpoint"):
        deploy.handle_custom_resource(event, context(), lambda: clients)


def test_a_hanging_s3_is_given_up_on_within_the_function_time(s3, monkeypatch):
    monkeypatch.setattr(deploy, "PUT_TIMEOUT_S", 0.3)
    s3.hang_s = 2
    event = cfn_event("Delete", s3.url, physical_id="reverie-schema")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="could not answer CloudFormation"):
        deploy.handle_custom_resource(event, context(), lambda: None)
    assert time.monotonic() - started < 3
    assert len(s3.answers) == deploy.PUT_ATTEMPTS


def test_a_refused_url_is_not_retried(s3):
    s3.statuses = [403]
    event = cfn_event("Delete", s3.url, physical_id="reverie-schema")
    with pytest.raises(RuntimeError, match="HTTP 403"):
        deploy.handle_custom_resource(event, context(), lambda: None)
    assert len(s3.answers) == 1


# ----------------------------------------------------------------------------------------- when the code cannot load


@pytest.fixture
def door_without_core(monkeypatch):
    """functions/migrate/app.py imported as Lambda would when the layer is broken."""
    monkeypatch.setitem(sys.modules, "reverie.platform.deploy", None)  # importing it raises ImportError
    spec = importlib.util.spec_from_file_location("reverie_fn_migrate_broken", functions()["MigrateFunction"].app_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failed_import_is_answered_failed_on_create(door_without_core, s3):
    assert door_without_core.CORE_IMPORT_ERROR.startswith("ModuleNotFoundError: import of reverie.platform.deploy")
    event = cfn_event("Create", s3.url)
    door_without_core.handler(event, context())
    assert_answers(s3.body, event, "FAILED")
    assert s3.body["Reason"].startswith("Reverie's code failed to import, nothing was migrated: ModuleNotFoundError")
    assert s3.answers[0].content_type == ""


def test_a_failed_import_still_lets_a_delete_and_so_a_rollback_finish(door_without_core, s3):
    event = cfn_event("Delete", s3.url, physical_id="reverie-schema")
    door_without_core.handler(event, context())
    assert_answers(s3.body, event, "SUCCESS")


def test_a_failed_import_fails_a_direct_invocation_loudly(door_without_core):
    with pytest.raises(RuntimeError, match="the core failed to import"):
        door_without_core.handler({"action": "migrate"}, context())
