"""The processed_jobs table: each tier's outcome of each job (done, empty, failed, dead) and when it was
recorded. A tier applies a job at most once because its outcome row commits with its effects.

Writes compose into a caller's transaction; every statement is scoped by project (and user where it writes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from reverie.domain.outcomes import TierOutcome
from reverie.domain.tiers import NARRATIVE, TIERS, Tier, TierStatus
from reverie.store.db import ALL_PROJECTS, Database

# An outcome a later delivery may replace: a failure. done and empty are final (exactly-once effect).
_REPLACEABLE = ("failed", "dead")


def statuses(cur, project_id: str, tier: Tier, job_ids: Sequence[str]) -> dict[str, str]:
    """The recorded status of each of these jobs in one tier (jobs with no row are absent)."""
    if not job_ids:
        return {}
    cur.execute(
        "SELECT job_id, status FROM processed_jobs WHERE project_id = %s AND tier = %s AND job_id = ANY(%s)",
        (project_id, Tier(tier).value, list(job_ids)),
    )
    return {row[0]: row[1] for row in cur.fetchall()}


def write_outcomes(cur, project_id: str, user_id: str, tier: Tier, outcomes: dict[str, TierOutcome]) -> None:
    """Record done/empty outcomes; they replace an earlier failure but never an earlier success."""
    for job_id, o in outcomes.items():
        cur.execute(
            "INSERT INTO processed_jobs AS p (job_id, tier, project_id, user_id, status, added, updated, superseded,"
            " reason, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL)"
            " ON CONFLICT (project_id, job_id, tier) DO UPDATE SET status = excluded.status,"
            " added = excluded.added, updated = excluded.updated, superseded = excluded.superseded,"
            " reason = excluded.reason, error = NULL, processed_at = now()"
            " WHERE p.status IN %s",
            (job_id, Tier(tier).value, project_id, user_id, TierStatus(o.status).value, o.added, o.updated,
             o.superseded, o.reason, _REPLACEABLE),
        )


def write_failures(cur, project_id: str, user_id: str, tier: Tier,
                   failures: dict[str, tuple[TierStatus, str, datetime]]) -> None:
    """Record failed/dead with the error, unless the job already succeeded in this tier, or its user has been
    forgotten since it was made (a forgotten user's jobs leave no row)."""
    for job_id, (status, error, created_at) in failures.items():
        cur.execute(
            "INSERT INTO processed_jobs AS p (job_id, tier, project_id, user_id, status, error)"
            " SELECT %s, %s, %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM user_tombstones t"
            " WHERE t.project_id = %s AND t.user_id = %s AND t.forgotten_at >= %s)"
            " ON CONFLICT (project_id, job_id, tier) DO UPDATE SET status = excluded.status, error = excluded.error,"
            " processed_at = now() WHERE p.status IN %s",
            (job_id, Tier(tier).value, project_id, user_id, TierStatus(status).value, error[:2000], project_id,
             user_id, created_at, _REPLACEABLE),
        )


def write_refusal(cur, project_id: str, user_id: str | None, tier: Tier, job_id: str, reason: str) -> bool:
    """A refused (poison) job, so its status shows why. Only for a project that exists: a malformed body
    must not create rows in some other scope."""
    cur.execute(
        "INSERT INTO processed_jobs AS p (job_id, tier, project_id, user_id, status, reason, error)"
        " SELECT %s, %s, id, %s, 'failed', %s, %s FROM projects WHERE id = %s"
        " ON CONFLICT (project_id, job_id, tier) DO UPDATE SET status = 'failed', reason = excluded.reason,"
        " error = excluded.error, processed_at = now() WHERE p.status IN %s",
        (job_id, Tier(tier).value, user_id or "", "refused: " + reason[:500], reason[:2000], project_id,
         _REPLACEABLE),
    )
    return cur.rowcount > 0


def job_rows(cur, project_id: str, job_id: str) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT tier, status, added, updated, superseded, reason, error, processed_at FROM processed_jobs"
        " WHERE project_id = %s AND job_id = %s",
        (project_id, job_id),
    )
    columns = [c[0] for c in cur.description]
    return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def errors_of(cur, tier: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """The last recorded error of (project_id, job_id) pairs in one tier: for the DLQ listing (whose messages are
    of any project: the caller's transaction is in ALL_PROJECTS)."""
    keys = list(keys)
    if not keys:
        return {}
    cur.execute(
        "SELECT project_id, job_id, coalesce(error, reason) FROM processed_jobs"
        " WHERE tier = %s AND (project_id, job_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        (tier, [k[0] for k in keys], [k[1] for k in keys]),
    )
    return {(r[0], r[1]): r[2] for r in cur.fetchall()}


def any_tier_processed(db: Database, project_id: str, job_id: str) -> bool:
    """True when at least one tier has recorded an outcome for the job: proof that it was published."""
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM processed_jobs WHERE project_id = %s AND job_id = %s LIMIT 1", (project_id, job_id))
        return cur.fetchone() is not None


def last_processed_at(db: Database) -> dict[str, datetime | None]:
    """When each tier last recorded any job outcome (all projects): one index probe per tier."""
    with db.transaction(ALL_PROJECTS) as conn, conn.cursor() as cur:
        out = {}
        for tier in TIERS:
            cur.execute("SELECT max(processed_at) FROM processed_jobs WHERE tier = %s", (tier.value,))
            out[tier.value] = cur.fetchone()[0]
        return out


def last_writes(db: Database, project_id: str) -> dict[str, Any]:
    """Per tier, when the project's last job outcome was recorded and what it was."""
    with db.cursor(project_id) as cur:
        cur.execute(
            "SELECT DISTINCT ON (tier) tier, processed_at, status FROM processed_jobs WHERE project_id = %s"
            " ORDER BY tier, processed_at DESC",
            (project_id,),
        )
        rows = {r["tier"]: r for r in cur.fetchall()}
    return {
        t.value: ({"at": rows[t.value]["processed_at"], "status": rows[t.value]["status"]} if t.value in rows else None)
        for t in Tier
    }


_FAILURES = ("SELECT tier, count(*) FILTER (WHERE status = 'failed') AS failed,"
             " count(*) FILTER (WHERE status = 'dead') AS dead FROM processed_jobs"
             " WHERE status IN ('failed', 'dead') AND processed_at >= now() - make_interval(secs => %s)")


def recent_failures(db: Database, project_id: str, within_s: float) -> dict[str, dict[str, int]]:
    """Per tier, how many of the project's jobs were recorded failed or dead in the last `within_s` seconds (and
    not applied since: an applied job's row says done)."""
    with db.read(project_id) as cur:
        cur.execute(_FAILURES + " AND project_id = %s GROUP BY tier", (within_s, project_id))
        return _per_tier(cur.fetchall())


def recent_failures_all(db: Database, within_s: float) -> dict[str, dict[str, int]]:
    """The same, for every project: for operators."""
    with db.read(ALL_PROJECTS) as cur:
        cur.execute(_FAILURES + " GROUP BY tier", (within_s,))
        return _per_tier(cur.fetchall())


def _per_tier(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    found = {r["tier"]: {"failed": int(r["failed"]), "dead": int(r["dead"])} for r in rows}
    return {t.value: found.get(t.value, {"failed": 0, "dead": 0}) for t in TIERS}


def recent_of_user(cur, project_id: str, user_id: str, limit: int) -> list[tuple[str, datetime]]:
    """The user's jobs with an outcome in some tier, the most recently recorded first (at most `limit`): (job id,
    when a tier last recorded it)."""
    cur.execute(
        "SELECT job_id, max(processed_at) FROM processed_jobs WHERE project_id = %s AND user_id = %s GROUP BY job_id"
        " ORDER BY max(processed_at) DESC, job_id DESC LIMIT %s",
        (project_id, user_id, limit),
    )
    return [(job_id, at) for job_id, at in cur.fetchall()]


def recorded_of_user(cur, project_id: str, user_id: str, job_ids: Sequence[str]) -> set[str]:
    """Which of these jobs of the user have an outcome in some tier."""
    if not job_ids:
        return set()
    cur.execute("SELECT DISTINCT job_id FROM processed_jobs WHERE project_id = %s AND user_id = %s"
                " AND job_id = ANY(%s)", (project_id, user_id, list(job_ids)))
    return {row[0] for row in cur.fetchall()}


def rows_of_user_jobs(cur, project_id: str, user_id: str, job_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each tier's outcome row of these jobs of the user, by job id (as `job_rows` reads one job's)."""
    if not job_ids:
        return {}
    cur.execute(
        "SELECT job_id, tier, status, added, updated, superseded, reason, error, processed_at FROM processed_jobs"
        " WHERE project_id = %s AND user_id = %s AND job_id = ANY(%s)",
        (project_id, user_id, list(job_ids)),
    )
    columns = [c[0] for c in cur.description]
    found: dict[str, list[dict[str, Any]]] = {}
    for row in cur.fetchall():
        record = dict(zip(columns, row, strict=True))
        found.setdefault(record.pop("job_id"), []).append(record)
    return found


# ---------------------------------------------------------------- narrative jobs
# A narrative job's outcome is recorded here too, under the name NARRATIVE (no tier has it): its status answers
# from the same row, the forget and the export find it with the user's other outcomes, the DLQ listing reads its
# error. done and empty are final; failed and dead are replaced by a later delivery's outcome.


def narrative_outcome(cur, project_id: str, job_id: str) -> dict[str, Any] | None:
    """A narrative job's recorded outcome: {status, reason, error, processed_at}, or None."""
    cur.execute("SELECT status, reason, error, processed_at FROM processed_jobs WHERE project_id = %s"
                " AND job_id = %s AND tier = %s", (project_id, job_id, NARRATIVE))
    row = cur.fetchone()
    return dict(zip(("status", "reason", "error", "processed_at"), row, strict=True)) if row else None


def write_narrative_outcome(cur, project_id: str, user_id: str, job_id: str, status: TierStatus, *,
                            made_at: datetime, reason: str | None = None, error: str | None = None) -> None:
    """Record a narrative job's outcome, unless it already succeeded, or its user was forgotten since it was made
    (a forgotten user's jobs leave no row)."""
    cur.execute(
        "INSERT INTO processed_jobs AS p (job_id, tier, project_id, user_id, status, reason, error)"
        " SELECT %s, %s, %s, %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM user_tombstones t"
        " WHERE t.project_id = %s AND t.user_id = %s AND t.forgotten_at >= %s)"
        " ON CONFLICT (project_id, job_id, tier) DO UPDATE SET status = excluded.status, reason = excluded.reason,"
        " error = excluded.error, processed_at = now() WHERE p.status IN %s",
        (job_id, NARRATIVE, project_id, user_id, TierStatus(status).value, reason, (error or None) and error[:2000],
         project_id, user_id, made_at, _REPLACEABLE),
    )


def last_narrative_outcome(db: Database, project_id: str, user_id: str) -> dict[str, Any] | None:
    """The user's most recently recorded narrative job: {job_id, status, reason, error, processed_at}, or None."""
    with db.read(project_id) as cur:
        cur.execute("SELECT job_id, status, reason, error, processed_at FROM processed_jobs WHERE project_id = %s"
                    " AND user_id = %s AND tier = %s ORDER BY processed_at DESC LIMIT 1",
                    (project_id, user_id, NARRATIVE))
        row = cur.fetchone()
        return dict(row) if row else None


def recorded(db: Database, project_id: str, job_ids: Sequence[str]) -> set[str]:
    """Which of these jobs some tier has recorded an outcome of: proof that they were published."""
    if not job_ids:
        return set()
    with db.read(project_id) as cur:
        cur.execute("SELECT DISTINCT job_id FROM processed_jobs WHERE project_id = %s AND job_id = ANY(%s)",
                    (project_id, list(job_ids)))
        return {row["job_id"] for row in cur.fetchall()}


# The jobs of %(jobs)s that every tier of the user %(user)s has learned (done or empty).
LEARNED = (
    "SELECT job_id FROM processed_jobs WHERE project_id = %(project)s AND user_id = %(user)s AND job_id = ANY(%(jobs)s)"
    " AND status IN ('done', 'empty') GROUP BY job_id HAVING count(*) = %(tiers)s"
)


def learned_params(project_id: str, user_id: str, job_ids: Sequence[str]) -> dict[str, Any]:
    return {"project": project_id, "user": user_id, "jobs": list(job_ids), "tiers": len(TIERS)}


def learned(db: Database, project_id: str, user_id: str, job_ids: Sequence[str]) -> set[str]:
    """Which of these jobs of the user every tier has learned (done or empty): what recall no longer shows as said
    but not yet learned. One read."""
    if not job_ids:
        return set()
    with db.read(project_id) as cur:
        cur.execute(LEARNED, learned_params(project_id, user_id, job_ids))
        return {row["job_id"] for row in cur.fetchall()}
