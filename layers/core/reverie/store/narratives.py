"""The narratives table: versioned per-user summaries, each citing the memories it was written from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reverie.store.db import ALL_PROJECTS, Database


def latest(db: Database, project_id: str, user_id: str) -> dict[str, Any] | None:
    """The newest narrative version of a user: {text, version, generated_at, citations}, or None."""
    with db.read(project_id) as cur:
        cur.execute(
            "SELECT text, version, generated_at, citations FROM narratives WHERE project_id = %s AND user_id = %s"
            " ORDER BY version DESC LIMIT 1",
            (project_id, user_id),
        )
        row = cur.fetchone()
        return dict(row) if row else None


def add_version(cur, project_id: str, user_id: str, *, text: str, citations: list[str], model: str,
                made_at: datetime) -> int | None:
    """Write the user's next version; None when the user was forgotten after `made_at` (the job's time)."""
    cur.execute("SELECT 1 FROM user_tombstones WHERE project_id = %s AND user_id = %s AND forgotten_at > %s",
                (project_id, user_id, made_at))
    if cur.fetchone():
        return None
    cur.execute(
        "INSERT INTO narratives (project_id, user_id, version, text, citations, model)"
        " SELECT %s, %s, coalesce(max(version), 0) + 1, %s, %s, %s FROM narratives"
        " WHERE project_id = %s AND user_id = %s RETURNING version",
        (project_id, user_id, text, citations, model, project_id, user_id),
    )
    return cur.fetchone()[0]


def stale_users(db: Database, older_than: datetime, limit: int) -> list[dict[str, Any]]:
    """Users with current memories whose newest narrative is missing or older than `older_than`:
    [{project_id, user_id, last}], `last` None when they have none. Of every project (the weekly sweep's)."""
    with db.read(ALL_PROJECTS) as cur:
        cur.execute(
            "SELECT m.project_id, m.user_id, max(n.generated_at) AS last"
            " FROM (SELECT DISTINCT project_id, user_id FROM memories WHERE superseded_at IS NULL) m"
            " LEFT JOIN narratives n ON n.project_id = m.project_id AND n.user_id = m.user_id"
            " GROUP BY m.project_id, m.user_id HAVING max(n.generated_at) IS NULL OR max(n.generated_at) < %s"
            " LIMIT %s",
            (older_than, limit),
        )
        return [dict(r) for r in cur.fetchall()]
