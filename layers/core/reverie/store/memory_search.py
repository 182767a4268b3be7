"""Ranked lookups over the memories table: the two halves of a hybrid search (nearest by vector, matching by
full text), reading the winners, and the candidates a new item is reconciled against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2.extras import Json

from reverie.domain.memory import Memory
from reverie.domain.tiers import Tier
from reverie.store.db import Database, vector_literal
from reverie.store.memories import COLUMNS, as_memory, or_tsquery


@dataclass(frozen=True)
class Ranked:
    """One hit of a ranked lookup: what fusion needs (the id, and the recorded_at its tie-break prefers), and
    for a vector hit its distance (to merge scans of several tiers)."""

    id: str
    recorded_at: datetime
    distance: float | None = None


def nearest(
    db: Database, project_id: str, user_id: str, embedding: list[float], *, k: int,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
) -> list[Ranked]:
    """The user's `k` memories nearest to `embedding` by cosine distance, best first.

    Exact distances over the user's own rows (no global vector index: filtered to one user it keeps almost none
    of that user's rows), on the half-precision copies in the covering index of migration 0004."""
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    params.update(qvec=vector_literal(embedding), k=k)
    with db.read(project_id, cursor_factory=None) as cur:
        cur.execute(
            f"SELECT id::text, recorded_at, embedding_half <=> %(qvec)s::halfvec AS d FROM memories"
            f" WHERE {where} AND embedding_half IS NOT NULL ORDER BY d LIMIT %(k)s",
            params,
        )
        return [Ranked(row[0], row[1], row[2]) for row in cur.fetchall()]


def matching(
    db: Database, project_id: str, user_id: str, query: str, *, k: int,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
) -> list[Ranked]:
    """The user's `k` memories that best match any word of `query` (full text, ts_rank_cd), best first."""
    terms = or_tsquery(query)
    if not terms:
        return []
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    params.update(terms=terms, k=k)
    with db.read(project_id, cursor_factory=None) as cur:
        cur.execute(
            f"SELECT id::text, recorded_at, ts_rank_cd(tsv, q) AS r FROM memories, to_tsquery('english', %(terms)s) q"
            f" WHERE {where} AND tsv @@ q ORDER BY r DESC LIMIT %(k)s",
            params,
        )
        return [Ranked(row[0], row[1]) for row in cur.fetchall()]


def fetch(db: Database, project_id: str, user_id: str, ids: Sequence[str]) -> list[Memory]:
    """The user's memories with these ids, in the order given; an id whose row is gone is skipped."""
    if not ids:
        return []
    with db.read(project_id) as cur:
        cur.execute(
            f"SELECT {COLUMNS} FROM memories WHERE project_id = %s AND user_id = %s AND id = ANY(%s::uuid[])",
            (project_id, user_id, list(ids)),
        )
        rows = {str(row["id"]): row for row in cur.fetchall()}
    return [as_memory(rows[i]) for i in ids if i in rows]


def _scope(
    project_id: str, user_id: str, tiers: Sequence[Tier] | None, filters: dict[str, Any] | None,
    as_of: datetime | None,
) -> tuple[str, dict[str, Any]]:
    """The rows a search may return: the user's, of these tiers, current (or current at `as_of`), matching
    `filters` (metadata containment)."""
    clauses = ["project_id = %(project)s", "user_id = %(user)s", "tier = ANY(%(tiers)s)"]
    params: dict[str, Any] = {
        "project": project_id, "user": user_id, "tiers": [Tier(t).value for t in (tiers or list(Tier))],
    }
    if as_of is None:
        clauses.append("superseded_at IS NULL")
    else:
        clauses.append("recorded_at <= %(as_of)s AND (superseded_at IS NULL OR superseded_at > %(as_of)s)")
        params["as_of"] = as_of
    if filters:
        clauses.append("metadata @> %(filters)s")
        params["filters"] = Json(filters)
    return " AND ".join(clauses), params


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
