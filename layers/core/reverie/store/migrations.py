"""Versioned SQL migrations: `reverie migrate` applies them; functions check the version at cold start."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg2.errors
from psycopg2 import sql

from reverie.domain.errors import SchemaBehind
from reverie.store.db import ALL_PROJECTS, NO_PROJECT, Database

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any fixed number: serialises concurrent migrators (two deploys, or a deploy and `reverie migrate`).
_LOCK_KEY = 7_311_994_201
# The role migration 0006 makes and grants what the functions need; their login role is a member of it.
RUNTIME_ROLE = "reverie_runtime"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("reverie.store").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 0001.. without gaps, found {versions}")
    return found


def latest_version() -> int:
    return available()[-1].version


def current_version(db: Database) -> int:
    with db.transaction(NO_PROJECT) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return int(cur.fetchone()[0])


class MigrationTimeout(RuntimeError):
    """A migration gave up waiting: for a lock (lock_timeout) or for a statement to finish (statement_timeout).
    Its transaction is rolled back, so nothing of it is applied."""


def migrate(db: Database, *, lock_timeout_s: float = 30.0, statement_timeout_s: float = 240.0) -> list[Migration]:
    """Apply what is missing, all in one transaction under an advisory lock. A second run applies nothing.

    A statement that waits longer than `lock_timeout_s` for a lock (the advisory lock held by another migrator,
    or a table a long transaction holds) or runs longer than `statement_timeout_s` fails fast with
    MigrationTimeout, instead of outliving the deploy that runs it."""
    try:
        return _migrate(db, lock_timeout_s, statement_timeout_s)
    except psycopg2.errors.LockNotAvailable as exc:
        raise MigrationTimeout(
            f"migration waited more than {lock_timeout_s:g} s for a lock (lock_timeout) and was rolled back: "
            "another migration may be running, or a long transaction holds a table it alters "
            f"(see pg_locks / pg_stat_activity): {_first_line(exc)}"
        ) from exc
    except psycopg2.errors.QueryCanceled as exc:
        raise MigrationTimeout(
            f"a migration statement ran longer than {statement_timeout_s:g} s (statement_timeout) and was "
            f"rolled back: {_first_line(exc)}"
        ) from exc


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _migrate(db: Database, lock_timeout_s: float, statement_timeout_s: float) -> list[Migration]:
    applied: list[Migration] = []
    # Across projects: the owner is subject to the tables' row-level security too (forced), and a migration may
    # rewrite the rows of every project.
    with db.transaction(ALL_PROJECTS) as conn, conn.cursor() as cur:
        # SET LOCAL: for this transaction only (the connection goes back to the pool without them).
        cur.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                    (_ms(lock_timeout_s), _ms(statement_timeout_s)))
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        # Asked first: a role that may not create tables (the functions' own) then finds a current schema a no-op.
        cur.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for migration in available():
            if migration.version in done:
                continue
            cur.execute(migration.sql)
            cur.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration)
    return applied


def _ms(seconds: float) -> str:
    """A timeout setting's value: whole milliseconds, at least 1 (0 would mean no timeout at all)."""
    return f"{max(1, round(seconds * 1000))}ms"


def ensure_login_role(db: Database, name: str, password: str | None = None) -> None:
    """The functions' login role `name`, a member of RUNTIME_ROLE: made if missing, else brought back to LOGIN,
    NOSUPERUSER, NOBYPASSRLS (no row-level security passes it), and given `password` (None: none, for a server that
    trusts its local connections). Run by a role that may manage roles, on a migrated database (the embedded
    superuser locally; in AWS, the README's Deploying section does this by hand)."""
    with db.transaction(NO_PROJECT) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user = %s", (name,))
        if cur.fetchone()[0]:
            raise ValueError(f"the functions' role {name!r} must not be the role that owns and migrates the schema")
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))  # two starts at once make one role
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT PASSWORD %s")
                    .format(sql.SQL(verb), sql.Identifier(name)), (password,))
        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(RUNTIME_ROLE), sql.Identifier(name)))


def check_schema(db: Database) -> int:
    """Fail loudly, naming the fix, when the database is behind the code."""
    have, need = current_version(db), latest_version()
    if have < need:
        raise SchemaBehind(
            f"database schema is at version {have} but this code needs {need}: "
            "run `reverie migrate` (or redeploy, which runs the Migrate custom resource)"
        )
    return have
