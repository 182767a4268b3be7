"""The narratives table: versioned per-user summaries, each citing the memories it was written from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reverie.store.db import ALL_PROJECTS, Database
from reverie.store.tombstones import lock_user_narratives


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
    """Write the user's next version; None when the user was forgotten after `made_at` (the job's time). Under the
    lock a forget takes too (tombstones.lock_user_narratives), so a version and a forget never interleave."""
    lock_user_narratives(cur, project_id, user_id)
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


def users_with_memories(db: Database, project_id: str, *, min_memories: int, after: str | None, limit: int
                        ) -> list[dict[str, Any]]:
    """The project's users with at least `min_memories` current memories, in user_id order after `after`, at most
    `limit`: [{user_id, memories, learned_at, narrative_at}]: when their memories last changed, and when their newest
    narrative was written (None when they have none)."""
    with db.read(project_id) as cur:
        cur.execute(
            "SELECT m.user_id, m.memories, m.learned_at, (SELECT max(generated_at) FROM narratives n"
            " WHERE n.project_id = %s AND n.user_id = m.user_id) AS narrative_at FROM (SELECT user_id,"
            " count(*) AS memories, max(greatest(recorded_at, updated_at)) AS learned_at FROM memories"
            " WHERE project_id = %s AND superseded_at IS NULL AND (%s::text IS NULL OR user_id > %s)"
            " GROUP BY user_id HAVING count(*) >= %s) m ORDER BY m.user_id LIMIT %s",
            (project_id, project_id, after, after, min_memories, limit),
        )
        return [dict(r) for r in cur.fetchall()]


def count_users_with_memories(db: Database, project_id: str, *, min_memories: int) -> int:
    with db.read(project_id) as cur:
        cur.execute("SELECT count(*) AS n FROM (SELECT user_id FROM memories WHERE project_id = %s"
                    " AND superseded_at IS NULL GROUP BY user_id HAVING count(*) >= %s) m",
                    (project_id, min_memories))
        return int(cur.fetchone()["n"])
