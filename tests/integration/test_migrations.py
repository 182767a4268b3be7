"""Migrations apply once; a function started against an old schema fails naming the fix."""

import pytest

from reverie.domain.errors import SchemaBehind
from reverie.platform.clients import Clients
from reverie.store import NO_PROJECT, Database, current_version, latest_version, migrate


def _database_url(base: str, name: str) -> str:
    # the embedded server speaks over a unix socket: postgresql://postgres:@/<db>?host=<dir>
    head, _, query = base.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}?{query}" if query else f"{head.rsplit('/', 1)[0]}/{name}"


@pytest.fixture
def empty_database(engines):
    admin = Database(engines.database_url, max_connections=1)
    name = "schema_test"
    with admin.transaction(NO_PROJECT) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"CREATE DATABASE {name}")
        conn.autocommit = False
    yield _database_url(engines.database_url, name)
    admin.close()


def test_migrate_twice_is_a_noop_the_second_time(empty_database):
    db = Database(empty_database, max_connections=1)
    first = migrate(db)
    assert [m.version for m in first] == list(range(1, latest_version() + 1))
    assert migrate(db) == []
    assert current_version(db) == latest_version()
    with db.transaction(NO_PROJECT) as conn, conn.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cur.fetchone() is not None
    db.close()


def test_a_function_started_against_an_old_schema_fails_naming_the_command(empty_database, clients):
    settings = clients.settings.model_copy(update={"database_url": empty_database})
    stale = Clients(settings)
    with pytest.raises(SchemaBehind) as exc:
        _ = stale.db
    assert "reverie migrate" in exc.value.message
    assert "version 0" in exc.value.message

    migrate(Database(empty_database, max_connections=1))
    assert Clients(settings).db is not None  # once migrated, the same settings start fine


def test_the_cli_migrate_reports_nothing_to_apply_when_current(clients, capsys):
    from reverie_dev.cli import main

    assert main(["migrate"]) == 0
    assert "nothing to apply" in capsys.readouterr().out


def test_the_cli_migrate_gives_a_statement_the_time_its_settings_give(empty_database, clients, monkeypatch, capsys):
    from reverie_dev.cli import main

    monkeypatch.setattr(clients, "migration_database", lambda: Database(empty_database, max_connections=1))
    monkeypatch.setattr(clients, "settings", clients.settings.model_copy(update={"migrate_statement_timeout_s": 0.001}))
    assert main(["migrate"]) != 0
    assert "longer than 0.001 s" in capsys.readouterr().err
