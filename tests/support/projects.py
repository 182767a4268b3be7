"""Projects made for a test: a fresh project and its API key, so tests never see each other's data."""

from __future__ import annotations

import secrets

from reverie.store.projects import IssuedKey, create_project, issue_key


def new_project(db, prefix: str = "p") -> IssuedKey:
    """A project of its own (`<prefix>-<random>`) and a working key for it."""
    project_id = f"{prefix}-{secrets.token_hex(4)}"
    create_project(db, project_id)
    return issue_key(db, project_id, name="test key")
