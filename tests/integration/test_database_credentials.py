"""Database credentials come from a secret that RDS rotates: a connection the server refuses is retried once with
credentials fetched afresh (bypassing the cache), on a new pool. Shown on the real Postgres, with a role that
must give its password, and the secret in (moto's) Secrets Manager."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import psycopg2
import pytest

from reverie.domain.errors import ServiceUnavailable
from reverie.platform.clients import Clients
from reverie.store import NO_PROJECT, Database
from reverie.store.db import connection_string
from tests.support.waiting import wait_for


class PasswordRole:
    """A login role that must give its password (scram), on the test Postgres."""

    def __init__(self, admin, parts: dict[str, str]):
        self.admin = admin
        self.parts = parts
        self.name = "rotating_" + secrets.token_hex(4)
        self.password = secrets.token_urlsafe(12)

    def url(self, password: str) -> str:
        return connection_string(host=self.parts["host"], port=int(self.parts.get("port", 5432)),
                                 dbname=self.parts["dbname"], user=self.name, password=password, sslmode="disable")

    def rotate(self) -> str:
        """A new password, as a rotation sets it on the database (the old one stops working)."""
        self.password = secrets.token_urlsafe(12) + "'\\ @/"  # characters a URL or DSN must quote
        with self.admin.cursor() as cur:
            cur.execute(f"ALTER ROLE {self.name} PASSWORD %s", (self.password,))
        return self.password

    def connects(self, password: str) -> bool:
        try:
            psycopg2.connect(self.url(password), connect_timeout=2).close()
            return True
        except psycopg2.OperationalError:
            return False


@pytest.fixture
def role(engines):
    admin = psycopg2.connect(engines.database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SHOW hba_file")
        hba = Path(cur.fetchone()[0])
    if not hba.is_file() or not hba.stat().st_mode & 0o200:
        pytest.skip("needs the embedded Postgres (its pg_hba.conf), not an external DATABASE_URL")
    parts = psycopg2.extensions.parse_dsn(engines.database_url)
    role = PasswordRole(admin, parts)
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {role.name} LOGIN PASSWORD %s", (role.password,))
        cur.execute(f"GRANT SELECT ON schema_migrations TO {role.name}")
    saved = hba.read_text()
    # Only this role gives a password; everyone else keeps the embedded server's trust.
    hba.write_text(f"local all {role.name} scram-sha-256\n{saved}")
    with admin.cursor() as cur:
        cur.execute("SELECT pg_reload_conf()")
    wait_for(lambda: not role.connects("not-the-password"), timeout_s=10)
    yield role
    hba.write_text(saved)
    with admin.cursor() as cur:
        cur.execute("SELECT pg_reload_conf()")
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role.name,))
        cur.execute(f"DROP OWNED BY {role.name}")
        cur.execute(f"DROP ROLE {role.name}")
    admin.close()


class Credentials:
    """A credentials source with a cache, like a secret read through Powertools: fresh=True reads the latest."""

    def __init__(self, role: PasswordRole):
        self.role = role
        self.cached = role.password
        self.asked: list[bool] = []

    def __call__(self, fresh: bool = False) -> str:
        self.asked.append(fresh)
        if fresh:
            self.cached = self.role.password
        return self.role.url(self.cached)


def test_refused_credentials_are_fetched_afresh_once_and_the_connection_recovers(role):
    credentials = Credentials(role)
    db = Database(credentials, max_connections=2, connect_timeout_s=2)
    role.rotate()  # the secret rotated after this process cached it
    assert not role.connects(credentials.cached)

    with db.transaction(NO_PROJECT) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == role.name
    assert credentials.asked == [False, True]

    db.ping()  # the new pool keeps its connection: nothing is fetched again
    assert credentials.asked == [False, True]
    db.close()


def test_connections_in_use_finish_on_the_old_credentials_and_then_close(role):
    credentials = Credentials(role)
    db = Database(credentials, max_connections=2, connect_timeout_s=2)
    with db.transaction(NO_PROJECT) as outer:  # open before the rotation: a session outlives its password
        old_pool = db._pool
        role.rotate()
        with db.transaction(NO_PROJECT) as inner, inner.cursor() as cur:  # a new connection: refused, then fresh
            cur.execute("SELECT 1")
        assert db._pool is not old_pool
        with outer.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone()[0] == role.name
    assert outer.closed  # returned to the replaced pool: closed, not kept
    assert credentials.asked == [False, True]
    db.ping()
    db.close()


def test_credentials_still_refused_when_fresh_fail_once_and_clearly(role):
    asked = []

    def wrong(fresh: bool = False) -> str:
        asked.append(fresh)
        return role.url("never-the-password")

    db = Database(wrong, max_connections=1, connect_timeout_s=2)
    with pytest.raises(ServiceUnavailable, match="refused the credentials"):
        db.ping()
    assert asked == [False, True]  # one fresh fetch, no loop
    db.close()


def test_an_unreachable_database_is_not_mistaken_for_refused_credentials():
    asked = []

    def down(fresh: bool = False) -> str:
        asked.append(fresh)
        return "postgresql://reverie:pw@127.0.0.1:1/reverie"

    db = Database(down, max_connections=1, connect_timeout_s=1)
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        db.ping()
    assert asked == [False]
    db.close()


def test_the_process_clients_connect_with_host_and_port_and_the_rotated_secret(role, clients, engines):
    """DATABASE_HOST/PORT/NAME from the template, username and password from the secret (cached for 5 minutes):
    after a rotation, the refused connection reads the secret again and the function carries on."""
    sm = engines.client("secretsmanager")
    arn = sm.create_secret(Name=f"reverie/db/{role.name}",
                           SecretString=json.dumps({"username": role.name, "password": role.password}))["ARN"]
    settings = clients.settings.model_copy(update={
        "database_url": None, "database_host": role.parts["host"], "database_port": int(role.parts.get("port", 5432)),
        "database_name": role.parts["dbname"], "database_secret_arn": arn, "database_sslmode": "disable",
    })
    process = Clients(settings)
    try:
        assert process.db is not None  # checks the schema as the role
        sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": role.name,
                                                                  "password": role.rotate()}))
        process.close()  # the next connection is a new one: it opens with the cached (old) password first
        with process.db.read(NO_PROJECT) as cur:
            cur.execute("SELECT current_user AS who")
            assert cur.fetchone()["who"] == role.name
    finally:
        process.close()
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def test_the_connection_string_is_built_from_the_settings_parts(clients):
    settings = clients.settings.model_copy(update={
        "database_url": None, "database_host": "proxy.proxy-abc.us-east-1.rds.amazonaws.com", "database_port": 5432,
        "database_name": "reverie", "database_secret_arn": "arn:secret", "database_sslmode": "require",
    })
    process = Clients(settings)
    process._secret = lambda arn, fresh=False: json.dumps({"username": "app", "password": "p@ss w'rd"})
    parts = psycopg2.extensions.parse_dsn(process.database_url())
    assert parts == {"host": "proxy.proxy-abc.us-east-1.rds.amazonaws.com", "port": "5432", "dbname": "reverie",
                     "user": "app", "password": "p@ss w'rd", "sslmode": "require"}
