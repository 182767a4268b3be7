"""Reflection windows in Postgres: the jobs a tier holds per user until it learns them together.

Writes compose into a caller's transaction; every statement is scoped by project and user (or names jobs by
project and id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg2.extras import Json

from reverie.domain.tiers import Tier

# Outcomes after which a job is never held again: it was applied (or found empty) in this tier.
_APPLIED = ("done", "empty")


@dataclass(frozen=True)
class WindowState:
    jobs: int
    age_s: float  # how long the oldest has waited, by the database's clock (0 when empty)


def hold(cur, project_id: str, user_id: str, tier: Tier, jobs: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Hold one user's jobs, given in order as (job id, job as JSON), skipping those already held or applied in
    this tier, and those made before their user was forgotten (nothing of a forgotten user is kept, not even
    for a while). Returns the ids newly held."""
    held = []
    for job_id, body in jobs:
        cur.execute(
            "INSERT INTO held_jobs (project_id, user_id, tier, job_id, job)"
            " SELECT %(p)s, %(u)s, %(t)s, %(j)s, %(body)s WHERE NOT EXISTS (SELECT 1 FROM processed_jobs"
            "  WHERE project_id = %(p)s AND job_id = %(j)s AND tier = %(t)s AND status IN %(applied)s)"
            " AND NOT EXISTS (SELECT 1 FROM user_tombstones WHERE project_id = %(p)s AND user_id = %(u)s"
            "  AND forgotten_at >= %(made)s::timestamptz)"
            " ON CONFLICT (project_id, job_id, tier) DO NOTHING RETURNING job_id",
            {"p": project_id, "u": user_id, "t": Tier(tier).value, "j": job_id, "body": Json(body),
             "applied": _APPLIED, "made": body["created_at"]},
        )
        if cur.fetchone() is not None:
            held.append(job_id)
    return held


def state(cur, project_id: str, user_id: str, tier: Tier) -> WindowState:
    cur.execute(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(held_at)), 0) FROM held_jobs"
        " WHERE project_id = %s AND user_id = %s AND tier = %s",
        (project_id, user_id, Tier(tier).value),
    )
    count, age_s = cur.fetchone()
    return WindowState(jobs=int(count), age_s=float(age_s))


def window(cur, project_id: str, user_id: str, tier: Tier, limit: int) -> list[dict[str, Any]]:
    """The user's held jobs (as JSON) in arrival order, at most `limit` (the oldest first)."""
    cur.execute(
        "SELECT job FROM held_jobs WHERE project_id = %s AND user_id = %s AND tier = %s ORDER BY seq LIMIT %s",
        (project_id, user_id, Tier(tier).value, limit),
    )
    return [body for (body,) in cur.fetchall()]


def release(cur, project_id: str, tier: Tier, job_ids: Sequence[str]) -> int:
    """The jobs leave the window: applied (in the caller's transaction) or parked in the dead-letter queue."""
    if not job_ids:
        return 0
    cur.execute("DELETE FROM held_jobs WHERE project_id = %s AND tier = %s AND job_id = ANY(%s)",
                (project_id, Tier(tier).value, list(job_ids)))
    return cur.rowcount


def count_failure(cur, project_id: str, tier: Tier, job_ids: Sequence[str], error: str, retry_after_s: float
                  ) -> dict[str, int]:
    """A failed attempt for each of these held jobs, counted only for a job not waiting out an earlier failure:
    a counted one then waits `retry_after_s` before its next attempt counts. Returns their attempts so far."""
    if not job_ids:
        return {}
    cur.execute(
        "UPDATE held_jobs SET last_error = %s,"
        " attempts = attempts + CASE WHEN retry_at IS NULL OR retry_at <= now() THEN 1 ELSE 0 END,"
        " retry_at = CASE WHEN retry_at IS NULL OR retry_at <= now() THEN now() + make_interval(secs => %s)"
        " ELSE retry_at END"
        " WHERE project_id = %s AND tier = %s AND job_id = ANY(%s) RETURNING job_id, attempts",
        (error[:2000], retry_after_s, project_id, Tier(tier).value, list(job_ids)),
    )
    return {job_id: attempts for job_id, attempts in cur.fetchall()}


def due_windows(cur, waited_s: float, limit: int = 1000, quiet_s: float = 0) -> list[tuple[str, str, Tier]]:
    """(project, user, tier) of the windows whose oldest job has been held `waited_s` seconds or more, or (when
    `quiet_s` is set) whose newest has been held `quiet_s` seconds or more: the user has been quiet that long (by
    the database's clock, which set held_at); and not every job of which waits out a failure (see count_failure)."""
    cur.execute(
        "SELECT project_id, user_id, tier FROM held_jobs GROUP BY project_id, user_id, tier"
        " HAVING (min(held_at) <= now() - make_interval(secs => %s)"
        "  OR (%s > 0 AND max(held_at) <= now() - make_interval(secs => %s)))"
        " AND min(coalesce(retry_at, '-infinity')) <= now() ORDER BY min(held_at) LIMIT %s",
        (waited_s, quiet_s, quiet_s, limit),
    )
    return [(p, u, Tier(t)) for p, u, t in cur.fetchall()]


def due_at(cur, project_id: str, job_id: str, waited_s: float, quiet_s: float = 0) -> dict[str, datetime]:
    """For each tier holding this job: when the user's window there is due to close, by the rule of `due_windows`
    (the oldest job's time plus `waited_s`, or the newest's plus `quiet_s` if sooner), as the database's clock
    tells it."""
    cur.execute(
        "SELECT w.tier, least(min(w.held_at) + make_interval(secs => %s),"
        "  CASE WHEN %s > 0 THEN max(w.held_at) + make_interval(secs => %s) END)"
        " FROM held_jobs h JOIN held_jobs w ON w.project_id = h.project_id AND w.user_id = h.user_id"
        "  AND w.tier = h.tier"
        " WHERE h.project_id = %s AND h.job_id = %s AND w.project_id = %s GROUP BY w.tier",
        (waited_s, quiet_s, quiet_s, project_id, job_id, project_id),
    )
    return {tier: at for tier, at in cur.fetchall()}


def held_tiers(cur, project_id: str, job_id: str) -> dict[str, datetime]:
    """The tiers holding this job, and since when: for its status."""
    cur.execute("SELECT tier, held_at FROM held_jobs WHERE project_id = %s AND job_id = %s", (project_id, job_id))
    return {tier: held_at for tier, held_at in cur.fetchall()}


def totals(cur) -> dict[str, dict[str, float | int]]:
    """Per tier: how many jobs are held (all projects) and how long the oldest has waited."""
    cur.execute("SELECT tier, count(*), extract(epoch FROM now() - min(held_at)) FROM held_jobs GROUP BY tier")
    return {tier: {"jobs": int(count), "oldest_age_s": round(float(age), 1)} for tier, count, age in cur.fetchall()}


def project_totals(cur, project_id: str) -> dict[str, dict[str, float | int]]:
    """Per tier: how many of one project's jobs are held and how long its oldest has waited."""
    cur.execute("SELECT tier, count(*), extract(epoch FROM now() - min(held_at)) FROM held_jobs"
                " WHERE project_id = %s GROUP BY tier", (project_id,))
    return {tier: {"jobs": int(count), "oldest_age_s": round(float(age), 1)} for tier, count, age in cur.fetchall()}


def totals_by_project(cur, limit: int) -> dict[str, dict[str, float | int]]:
    """The projects holding the most jobs (all tiers), at most `limit`: how many and how long the oldest has
    waited. For operators (the caller's transaction is in ALL_PROJECTS)."""
    cur.execute("SELECT project_id, count(*), extract(epoch FROM now() - min(held_at)) FROM held_jobs"
                " GROUP BY project_id ORDER BY count(*) DESC, project_id LIMIT %s", (limit,))
    return {project: {"jobs": int(count), "oldest_age_s": round(float(age), 1)}
            for project, count, age in cur.fetchall()}


def of_user(cur, project_id: str, user_id: str, limit: int) -> list[dict[str, Any]]:
    """The user's held jobs, the latest first (at most `limit` rows): {job_id, tier, held_at, attempts, last_error,
    created_at (when the job was made, as its JSON says)}; never the words they carry."""
    cur.execute(
        "SELECT job_id, tier, held_at, attempts, last_error, job->>'created_at' AS created_at FROM held_jobs"
        " WHERE project_id = %s AND user_id = %s ORDER BY seq DESC LIMIT %s",
        (project_id, user_id, limit),
    )
    columns = [c[0] for c in cur.description]
    return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def due_of_user(cur, project_id: str, user_id: str, waited_s: float, quiet_s: float = 0) -> dict[str, datetime]:
    """For each tier holding jobs of the user: when the user's window there is due to close, as `due_at` says it."""
    cur.execute(
        "SELECT tier, least(min(held_at) + make_interval(secs => %s),"
        "  CASE WHEN %s > 0 THEN max(held_at) + make_interval(secs => %s) END)"
        " FROM held_jobs WHERE project_id = %s AND user_id = %s GROUP BY tier",
        (waited_s, quiet_s, quiet_s, project_id, user_id),
    )
    return {tier: at for tier, at in cur.fetchall()}
