"""Versioned SQL migrations: `reverie migrate` applies them; functions check the version at cold start."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from reverie.domain.errors import SchemaBehind
from reverie.store.db import Database

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any fixed number: serialises concurrent migrators (two deploys, or a deploy and `reverie migrate`).
_LOCK_KEY = 7_311_994_201


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
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return int(cur.fetchone()[0])


def migrate(db: Database) -> list[Migration]:
    """Apply what is missing, all in one transaction under an advisory lock. A second run applies nothing."""
    applied: list[Migration] = []
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
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


def check_schema(db: Database) -> int:
    """Fail loudly, naming the fix, when the database is behind the code."""
    have, need = current_version(db), latest_version()
    if have < need:
        raise SchemaBehind(
            f"database schema is at version {have} but this code needs {need}: "
            "run `reverie migrate` (or redeploy, which runs the Migrate custom resource)"
        )
    return have
