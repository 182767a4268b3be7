"""Ranked lookups over the memories table: the two halves of a hybrid search (nearest by vector, matching by
BM25), reading the winners with their session neighbours, and the candidates a new item is reconciled against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2.extras import Json

from reverie.domain.memory import ScoredMemory
from reverie.domain.tiers import Tier
from reverie.store.db import Database, vector_literal
from reverie.store.memories import COLUMNS, as_memory, or_tsquery


@dataclass(frozen=True)
class Ranked:
    """One hit of a ranked lookup: its id, the recorded_at a tie-break prefers, and its score on the list's own
    scale: the cosine distance of a vector hit (smaller is nearer), the BM25 score of a full-text hit."""

    id: str
    recorded_at: datetime
    distance: float | None = None
    score: float | None = None


# BM25's usual constants: k1, how soon a repeated word stops adding; b, how much a long memory is discounted.
BM25_K1 = 1.2
BM25_B = 0.75


def nearest(
    db: Database, project_id: str, user_id: str, embedding: list[float], *, k: int,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
    embedding_model: str | None = None,
) -> list[Ranked]:
    """The user's `k` memories nearest to `embedding` by cosine distance, best first; with `embedding_model`, only
    vectors of that model (another model's vectors live in another space).

    Exact distances over the user's own rows (no global vector index: filtered to one user it keeps almost none
    of that user's rows), on the half-precision copies in the covering index of migration 0009."""
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    params.update(qvec=vector_literal(embedding), k=k, model=embedding_model)
    same_model = "" if embedding_model is None else " AND embedding_model = %(model)s"
    with db.read(project_id, cursor_factory=None) as cur:
        cur.execute(
            f"SELECT id::text, recorded_at, embedding_half <=> %(qvec)s::halfvec AS d FROM memories"
            f" WHERE {where}{same_model} AND embedding_half IS NOT NULL ORDER BY d LIMIT %(k)s",
            params,
        )
        return [Ranked(row[0], row[1], distance=row[2]) for row in cur.fetchall()]


def matching(
    db: Database, project_id: str, user_id: str, query: str, *, k: int,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
) -> list[Ranked]:
    """The user's `k` memories that best match the words of `query` by BM25, best first.

    Postgres's own ranks (ts_rank, ts_rank_cd) do not weigh a word by how rare it is, so "Caroline" (in half of a
    user's memories) counts as much as "adoption" (in three). BM25 does: each query word that a memory holds adds
    its inverse document frequency, discounted for long memories. The statistics are the user's own, computed at
    query time: the number of memories in scope (an index-only count), and over the memories that match any word,
    each word's document frequency and the average length (close enough to the scope's, without reading every row).
    A word counts once per memory (tsvector length counts distinct words): memories are short."""
    terms = or_tsquery(query)
    if not terms:
        return []
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    params.update(query=query, terms=terms, k=k, k1=BM25_K1, b=BM25_B)
    with db.read(project_id, cursor_factory=None) as cur:
        # Each matching row is read once: its length and which query words it holds (no tsvector is kept, so the
        # set stays in memory); the words' frequencies come from those lists. float8 throughout: numeric is slow.
        cur.execute(
            "WITH q AS MATERIALIZED (SELECT lexeme, quote_literal(lexeme)::tsquery AS tq FROM ("
            "  SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(to_tsvector('english', %(query)s))) AS lexeme) w),"
            " hit AS MATERIALIZED (SELECT id, recorded_at, length(tsv)::float8 AS dl,"
            "  ARRAY(SELECT q.lexeme FROM q WHERE tsv @@ q.tq) AS words FROM memories"
            f"  WHERE {where} AND tsv @@ to_tsquery('english', %(terms)s)),"
            " scope AS MATERIALIZED (SELECT count(*)::float8 AS n, (SELECT avg(dl) FROM hit) AS avgdl"
            f"  FROM memories WHERE {where}),"
            " idf AS MATERIALIZED (SELECT word, ln(1.0 + (scope.n - count(*) + 0.5) / (count(*) + 0.5)) AS idf"
            "  FROM hit CROSS JOIN unnest(hit.words) AS word, scope GROUP BY word, scope.n)"
            " SELECT hit.id::text, hit.recorded_at,"
            "  (SELECT sum(idf.idf) FROM idf WHERE idf.word = ANY(hit.words)) * (%(k1)s::float8 + 1.0)"
            "  / (1.0 + %(k1)s::float8 * (1.0 - %(b)s::float8 + %(b)s::float8 * hit.dl / scope.avgdl)) AS bm25"
            " FROM hit, scope WHERE cardinality(hit.words) > 0"
            " ORDER BY bm25 DESC, hit.recorded_at DESC, hit.id LIMIT %(k)s",
            params,
        )
        return [Ranked(row[0], row[1], score=float(row[2])) for row in cur.fetchall()]


def best(
    db: Database, project_id: str, user_id: str, scores: dict[str, float], *, limit: int, neighbour_weight: float,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
) -> list[ScoredMemory]:
    """The `limit` best memories, read in full with their scores, best first: each candidate keeps its score, and
    the memory stored just before it and just after it in its session (same tier, same scope) gains
    `neighbour_weight` times it. Ties go to the newer memory, then to the smaller id. One statement.

    Only the best 2 x `limit` candidates lift their neighbours (each lift is two index lookups): half of a lower
    score seldom carries a memory into the top `limit` (bench/locomo.py found as much evidence either way)."""
    if not scores:
        return []
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    lifters = sorted(scores, key=lambda i: -scores[i])[: 2 * limit]
    params.update(ids=list(scores), scores=list(scores.values()), lifters=lifters, beta=neighbour_weight,
                  limit=limit)
    side = ("(SELECT id FROM memories WHERE {where} AND tier = hit.tier AND session_id = hit.session_id"
            " AND seq {op} hit.seq ORDER BY seq {order} LIMIT 1)")
    with db.read(project_id) as cur:
        cur.execute(
            # Every row is reached by its id (a lateral lookup on the primary key), never by scanning the user's.
            "WITH candidate AS MATERIALIZED (SELECT * FROM unnest(%(ids)s::uuid[], %(scores)s::float8[])"
            "  AS c(id, score)),"
            " hit AS MATERIALIZED (SELECT m.id, m.tier, m.session_id, m.seq, candidate.score FROM candidate"
            "  CROSS JOIN LATERAL (SELECT id, tier, session_id, seq FROM memories WHERE id = candidate.id"
            "  AND project_id = %(project)s AND user_id = %(user)s) m WHERE m.session_id IS NOT NULL AND %(beta)s > 0"
            "  AND candidate.id = ANY(%(lifters)s::uuid[])),"
            " lifted AS (SELECT id, score FROM candidate"
            "  UNION ALL SELECT beside.id, %(beta)s * hit.score FROM hit CROSS JOIN LATERAL ("
            f"   {side.format(where=where, op='<', order='DESC')} UNION ALL"
            f"   {side.format(where=where, op='>', order='ASC')}) beside),"
            " total AS MATERIALIZED (SELECT id, sum(score) AS score FROM lifted GROUP BY id),"
            # Read in full only what can be in the top `limit` (every memory tied with the last of them included).
            " cut AS (SELECT min(score) AS score FROM (SELECT score FROM total ORDER BY score DESC LIMIT %(limit)s) t)"
            " SELECT m.*, total.score FROM total JOIN cut ON total.score >= cut.score CROSS JOIN LATERAL ("
            f"  SELECT {COLUMNS} FROM memories WHERE id = total.id AND project_id = %(project)s"
            "  AND user_id = %(user)s) m"
            " ORDER BY total.score DESC, m.created_at DESC, m.id LIMIT %(limit)s",
            params,
        )
        rows = cur.fetchall()
    found = []
    for row in rows:
        row = dict(row)
        score = row.pop("score")
        found.append(ScoredMemory(**dict(as_memory(row)), score=score))
    return found


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
