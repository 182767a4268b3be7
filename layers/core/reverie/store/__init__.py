"""Postgres: the connection pool, schema migrations and the repositories. All SQL lives here."""

from reverie.store.db import Database
from reverie.store.migrations import check_schema, current_version, latest_version, migrate

__all__ = ["Database", "check_schema", "current_version", "latest_version", "migrate"]
