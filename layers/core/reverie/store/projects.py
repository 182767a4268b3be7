"""Projects and their API keys: keys made, stored hashed, listed and revoked."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from reverie.store.db import ALL_PROJECTS, Database

KEY_PREFIX = "rv_"


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    project_id: str
    key: str  # shown once, never stored


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key(project_id: str) -> IssuedKey:
    """A fresh key (not yet stored)."""
    return IssuedKey(key_id="key_" + secrets.token_hex(6), project_id=project_id,
                     key=KEY_PREFIX + secrets.token_urlsafe(32))


def issue_key(db: Database, project_id: str, name: str = "") -> IssuedKey:
    key = new_key(project_id)
    add_api_key(db, key_id=key.key_id, project_id=project_id, key_hash=hash_key(key.key), prefix=key.key[:8],
                name=name)
    return key


def create_project(db: Database, project_id: str, name: str | None = None) -> bool:
    """Create the project unless it exists; whether it was created."""
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO projects (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
            (project_id, name or project_id),
        )
        return cur.rowcount == 1


def create_project_with_key(db: Database, project_id: str, name: str | None = None,
                            key_name: str = "") -> IssuedKey | None:
    """A project and its first key, in one transaction. A project that exists already gets its first key only
    if it has none (one left behind keyless); otherwise nothing is written and None is answered."""
    key = new_key(project_id)
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO projects (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
            (project_id, name or project_id),
        )
        if cur.rowcount == 0:
            # the row lock keeps two concurrent creates from both finding no key
            cur.execute("SELECT 1 FROM projects WHERE id = %s FOR UPDATE", (project_id,))
            cur.execute("SELECT EXISTS (SELECT 1 FROM api_keys WHERE project_id = %s)", (project_id,))
            if cur.fetchone()[0]:
                return None
        cur.execute(
            "INSERT INTO api_keys (id, project_id, key_hash, prefix, name) VALUES (%s, %s, %s, %s, %s)",
            (key.key_id, project_id, hash_key(key.key), key.key[:8], key_name),
        )
    return key


def project_exists(db: Database, project_id: str) -> bool:
    with db.read(project_id) as cur:
        cur.execute("SELECT 1 FROM projects WHERE id = %s", (project_id,))
        return cur.fetchone() is not None


def list_projects(db: Database) -> list[dict[str, Any]]:
    """Every project, oldest first, with the number of its keys that still work (for operators: all projects)."""
    with db.read(ALL_PROJECTS) as cur:
        cur.execute(
            "SELECT p.id AS project_id, p.name, p.created_at,"
            " count(k.id) FILTER (WHERE k.revoked_at IS NULL) AS keys"
            " FROM projects p LEFT JOIN api_keys k ON k.project_id = p.id"
            " GROUP BY p.id ORDER BY p.created_at, p.id"
        )
        return [dict(row) for row in cur.fetchall()]


def list_api_keys(db: Database, project_id: str) -> list[dict[str, Any]]:
    """A project's keys, oldest first: ids, prefixes, names and dates (never a key, which is not stored)."""
    with db.read(project_id) as cur:
        cur.execute(
            "SELECT id AS key_id, prefix, name, created_at, revoked_at FROM api_keys"
            " WHERE project_id = %s ORDER BY created_at, id",
            (project_id,),
        )
        return [dict(row) for row in cur.fetchall()]


def key_exists(db: Database, project_id: str, key_id: str) -> bool:
    with db.read(project_id) as cur:
        cur.execute("SELECT 1 FROM api_keys WHERE project_id = %s AND id = %s", (project_id, key_id))
        return cur.fetchone() is not None


def add_api_key(db: Database, *, key_id: str, project_id: str, key_hash: str, prefix: str, name: str = "") -> None:
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO api_keys (id, project_id, key_hash, prefix, name) VALUES (%s, %s, %s, %s, %s)",
            (key_id, project_id, key_hash, prefix, name),
        )


def project_for_key_hash(db: Database, key_hash: str) -> str | None:
    """The project of a working key. Across projects: the key is what says which project a request is for."""
    with db.read(ALL_PROJECTS) as cur:
        cur.execute(
            "SELECT project_id FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
            (key_hash,),
        )
        row = cur.fetchone()
        return row["project_id"] if row else None


def revoke_api_key(db: Database, project_id: str, key_id: str) -> bool:
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE project_id = %s AND id = %s AND revoked_at IS NULL",
            (project_id, key_id),
        )
        return cur.rowcount == 1
