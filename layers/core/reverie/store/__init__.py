"""Postgres: the connection pool, schema migrations and one repository per table. All SQL lives here.

memories (and memory_events) · memory_search (ranked lookups over memories) · processed_jobs · held_jobs ·
narratives · llm_usage · projects (and api_keys) · tombstones (user_tombstones, the per-user lock) ·
user_data (one user across every table: export and forget) · users (a project's users, with counts)
"""

from reverie.store.db import ALL_PROJECTS, NO_PROJECT, Database
from reverie.store.migrations import check_schema, current_version, ensure_login_role, latest_version, migrate

__all__ = ["ALL_PROJECTS", "NO_PROJECT", "Database", "check_schema", "current_version", "ensure_login_role",
           "latest_version", "migrate"]
