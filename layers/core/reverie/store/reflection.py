"""What the reflectors read and write besides memories: job outcomes per tier, tombstones, candidate lookup.

Writes compose into a caller's transaction; every statement is scoped by project and user.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reverie.models import Tier, TierOutcome, TierStatus
from reverie.store.db import vector_literal
from reverie.store.memories import content_hash, or_tsquery

# An outcome a later delivery may replace: a failure. done and empty are final (exactly-once effect).
_REPLACEABLE = ("failed", "dead")


def lock_user_tier(cur, project_id: str, user_id: str, tier: Tier) -> None:
    """Serialise reflections of one user and tier (a redelivery racing a slow first delivery) until commit."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"reflect:{project_id}:{user_id}:{Tier(tier).value}",))


def statuses(cur, project_id: str, tier: Tier, job_ids: Sequence[str]) -> dict[str, str]:
    """The recorded status of each of these jobs in one tier (jobs with no row are absent)."""
    if not job_ids:
        return {}
    cur.execute(
        "SELECT job_id, status FROM processed_jobs WHERE project_id = %s AND tier = %s AND job_id = ANY(%s)",
        (project_id, Tier(tier).value, list(job_ids)),
    )
    return {row[0]: row[1] for row in cur.fetchall()}


def forgotten_at(cur, project_id: str, user_id: str) -> datetime | None:
    cur.execute("SELECT forgotten_at FROM user_tombstones WHERE project_id = %s AND user_id = %s",
                (project_id, user_id))
    row = cur.fetchone()
    return row[0] if row else None


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
    """The last recorded error of (project_id, job_id) pairs in one tier: for the DLQ listing."""
    keys = list(keys)
    if not keys:
        return {}
    cur.execute(
        "SELECT project_id, job_id, coalesce(error, reason) FROM processed_jobs"
        " WHERE tier = %s AND (project_id, job_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        (tier, [k[0] for k in keys], [k[1] for k in keys]),
    )
    return {(r[0], r[1]): r[2] for r in cur.fetchall()}


# ---------------------------------------------------------------- candidates for reconciliation


@dataclass
class Candidate:
    id: str
    text: str
    slot: str | None
    similarity: float | None
    valid_from: datetime | None
    via: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Probe:
    """What one new item looks for: its embedding, its slot and its words."""

    embedding: list[float] | None
    slot: str | None
    text: str


# "user" is in nearly every fact; as a search term it would match everything.
_IGNORED_TERMS = {"user", "users"}


def candidates(
    cur, project_id: str, user_id: str, tier: Tier, probes: Sequence[Probe], *, nearest: int = 5, by_text: int = 3,
) -> list[list[Candidate]]:
    """Current memories each probe may relate to: its nearest by cosine, those sharing its slot and the best
    full-text matches, in one statement for the whole batch. The cosine is exact (no index): a user's
    memories are few, and an approximate index scan filtered to one user can miss the nearest one."""
    if not probes:
        return []
    terms = [" | ".join(t for t in or_tsquery(p.text).split(" | ") if t and t not in _IGNORED_TERMS) for p in probes]
    cur.execute(
        "WITH q AS (SELECT * FROM unnest(%(idx)s::int[], %(vecs)s::text[], %(slots)s::text[], %(terms)s::text[])"
        " AS q(i, v, slot, terms)),"
        " scope AS (SELECT id, text, metadata->>'slot' AS slot, embedding, tsv, valid_from, recorded_at"
        " FROM memories WHERE project_id = %(project)s AND user_id = %(user)s AND tier = %(tier)s"
        " AND superseded_at IS NULL)"
        " SELECT q.i, c.id::text, c.text, c.slot, c.similarity, coalesce(c.valid_from, c.recorded_at), c.via"
        " FROM q CROSS JOIN LATERAL ("
        "  (SELECT s.*, 1 - (s.embedding <=> q.v::vector) AS similarity, 'vector' AS via FROM scope s"
        "   WHERE q.v IS NOT NULL AND s.embedding IS NOT NULL"
        "   ORDER BY 1 - (s.embedding <=> q.v::vector) DESC LIMIT %(nearest)s)"
        "  UNION ALL"
        "  (SELECT s.*, CASE WHEN q.v IS NULL OR s.embedding IS NULL THEN NULL"
        "   ELSE 1 - (s.embedding <=> q.v::vector) END, 'slot' FROM scope s"
        "   WHERE q.slot IS NOT NULL AND s.slot = q.slot ORDER BY s.recorded_at DESC LIMIT 5)"
        "  UNION ALL"
        "  (SELECT s.*, CASE WHEN q.v IS NULL OR s.embedding IS NULL THEN NULL"
        "   ELSE 1 - (s.embedding <=> q.v::vector) END, 'text' FROM scope s, to_tsquery('english', q.terms) tq"
        "   WHERE q.terms <> '' AND s.tsv @@ tq ORDER BY ts_rank_cd(s.tsv, tq) DESC LIMIT %(by_text)s)"
        " ) c ORDER BY q.i",
        {
            "idx": list(range(len(probes))),
            "vecs": [vector_literal(p.embedding) if p.embedding is not None else None for p in probes],
            "slots": [p.slot for p in probes], "terms": terms, "project": project_id, "user": user_id,
            "tier": Tier(tier).value, "nearest": nearest, "by_text": by_text,
        },
    )
    found: list[dict[str, Candidate]] = [{} for _ in probes]
    for i, memory_id, text, slot, similarity, valid_from, via in cur.fetchall():
        seen = found[i].get(memory_id)
        if seen is None:
            seen = found[i][memory_id] = Candidate(memory_id, text, slot, similarity, valid_from)
        seen.via.add(via)
    return [list(by_id.values()) for by_id in found]


def current_id_by_text(cur, project_id: str, user_id: str, tier: Tier, text: str) -> str | None:
    """The current memory with this normalised text, if any (the unique index allows one)."""
    cur.execute(
        "SELECT id::text FROM memories WHERE project_id = %s AND user_id = %s AND tier = %s AND content_hash = %s"
        " AND superseded_at IS NULL",
        (project_id, user_id, Tier(tier).value, content_hash(text)),
    )
    row = cur.fetchone()
    return row[0] if row else None


def current_hashes(cur, project_id: str, user_id: str, tier: Tier, texts: Sequence[str]) -> set[str]:
    """Which of these texts are already stored as current memories (by normalised-text hash)."""
    if not texts:
        return set()
    cur.execute(
        "SELECT content_hash FROM memories WHERE project_id = %s AND user_id = %s AND tier = %s"
        " AND superseded_at IS NULL AND content_hash = ANY(%s)",
        (project_id, user_id, Tier(tier).value, [content_hash(t) for t in texts]),
    )
    return {row[0] for row in cur.fetchall()}
