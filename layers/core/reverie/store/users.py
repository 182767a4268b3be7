"""A project's users as the tables know them: there is no users table, so a user is anyone with a memory, a job
outcome or a job held in a reflection window. Listed a page at a time in user_id order, with counts per user."""

from __future__ import annotations

from typing import Any

from reverie.store.db import Database

# The first ids of the project's users after `after` (and starting with `prefix`) in one table, in order, read
# through the table's (project_id, user_id, ...) index: it stops once it has `n` of them.
_IDS = """(SELECT DISTINCT user_id FROM {table} WHERE project_id = %(p)s AND user_id <> ''
      AND (%(after)s::text IS NULL OR user_id > %(after)s)
      AND (%(prefix)s::text IS NULL OR starts_with(user_id, %(prefix)s))
    ORDER BY user_id LIMIT %(n)s)"""
# A page of users: the first `n` ids of the three tables together, with their counts.
_PAGE = """
WITH ids AS (
    SELECT user_id FROM (""" + "\n        UNION ".join(_IDS.format(table=t) for t in ("memories", "processed_jobs",
                                                                                      "held_jobs")) + """
    ) u ORDER BY user_id LIMIT %(n)s
)
SELECT ids.user_id,
       coalesce(m.episodic, 0) AS episodic, coalesce(m.semantic, 0) AS semantic,
       coalesce(m.procedural, 0) AS procedural, coalesce(m.superseded, 0) AS superseded,
       coalesce(j.jobs, 0) AS jobs, coalesce(j.failed, 0) AS failed, coalesce(h.held, 0) AS held,
       n.version AS narrative_version,
       greatest(m.last_at, j.last_at, h.last_at, n.last_at) AS last_activity
FROM ids
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE superseded_at IS NULL AND tier = 'episodic') AS episodic,
           count(*) FILTER (WHERE superseded_at IS NULL AND tier = 'semantic') AS semantic,
           count(*) FILTER (WHERE superseded_at IS NULL AND tier = 'procedural') AS procedural,
           count(*) FILTER (WHERE superseded_at IS NOT NULL) AS superseded,
           max(greatest(updated_at, recorded_at)) AS last_at
    FROM memories WHERE project_id = %(p)s AND user_id = ids.user_id
) m ON true
LEFT JOIN LATERAL (
    SELECT count(DISTINCT job_id) AS jobs,
           count(DISTINCT job_id) FILTER (WHERE status IN ('failed', 'dead')) AS failed,
           max(processed_at) AS last_at
    FROM processed_jobs WHERE project_id = %(p)s AND user_id = ids.user_id
) j ON true
LEFT JOIN LATERAL (
    SELECT count(DISTINCT job_id) AS held, max(held_at) AS last_at
    FROM held_jobs WHERE project_id = %(p)s AND user_id = ids.user_id
) h ON true
LEFT JOIN LATERAL (
    SELECT max(version) AS version, max(generated_at) AS last_at
    FROM narratives WHERE project_id = %(p)s AND user_id = ids.user_id
) n ON true
ORDER BY ids.user_id
"""


def page(db: Database, project_id: str, *, limit: int, after: str | None = None,
         prefix: str | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` users of the project after the user id `after` (those whose id starts with `prefix`, when
    given), in user_id order: {user_id, episodic, semantic, procedural (current memories), superseded, jobs,
    failed (jobs failed or dead in some tier), held (jobs held in windows), narrative_version, last_activity}.
    The second value says whether more follow."""
    with db.read(project_id) as cur:
        cur.execute(_PAGE, {"p": project_id, "after": after, "prefix": prefix or None, "n": limit + 1})
        rows = [dict(r) for r in cur.fetchall()]
    return rows[:limit], len(rows) > limit
