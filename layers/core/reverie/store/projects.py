"""Projects and their API keys (stored hashed)."""

from __future__ import annotations

from reverie.store.db import Database


def create_project(db: Database, project_id: str, name: str | None = None) -> None:
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO projects (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
            (project_id, name or project_id),
        )


def add_api_key(db: Database, *, key_id: str, project_id: str, key_hash: str, prefix: str, name: str = "") -> None:
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO api_keys (id, project_id, key_hash, prefix, name) VALUES (%s, %s, %s, %s, %s)",
            (key_id, project_id, key_hash, prefix, name),
        )


def project_for_key_hash(db: Database, key_hash: str) -> str | None:
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT project_id FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
            (key_hash,),
        )
        row = cur.fetchone()
        return row[0] if row else None


def revoke_api_key(db: Database, project_id: str, key_id: str) -> bool:
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE project_id = %s AND id = %s AND revoked_at IS NULL",
            (project_id, key_id),
        )
        return cur.rowcount == 1
