"""Ranked lookups over the memories table: the two halves of a hybrid search (nearest by vector, matching by
BM25), reading the winners with their session neighbours, and the candidates a new item is reconciled against."""

from __future__ import annotations

import time
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


# A user with at least this many memories in a search's scope is searched through the approximate vector index
# (migration 0010): an exact scan grows with the user's rows, and past this size costs more than a reply can wait.
LARGE_SCOPE = 20_000
# How many candidates the vector index keeps in its beam. Set by trial on bench/scale.py's heavy user, not swept.
HNSW_EF_SEARCH = 100
# How many rows the vector index may visit to find a large user's own (pgvector's iterative scan stops there): about
# HNSW_SCAN_MARGIN times what it takes to meet k of the user's rows at their share of the table, within these bounds
# (the most for a scope not counted yet). The walk's time grows with the rows it visits. Swept by hand on
# bench/scale.py's heavy user (a tenth of the table, hashed vectors) from 3 to 10: the vector half found more of the
# exact top k the further it walked, but the hybrid search's top 10 barely changed (the words half carries most of
# it), so the margin is kept low. Its plan does not depend on it.
HNSW_SCAN_MARGIN = 6
HNSW_MIN_SCAN_TUPLES = 2_000
HNSW_MAX_SCAN_TUPLES = 20_000
# A user with at least this many memories in scope, once counted, has the two halves of a hybrid search run at once
# on two connections: each takes a while there, more than the function's kept plan (migration 0011) saves over two
# statements planned afresh and a third to blend. bench/search_plans.py (2 cores, through the API's handler): with
# 5,000 memories one function call searched in p50 17.7 ms against 20.2 apart; with 12,500, 32.8 (p95 43.5) against
# 31.3 (p95 36.9). Set between the two, not swept.
HALVES_APART_SCOPE = 8_000
# BM25's average memory length for a scope of LARGE_SCOPE memories or more: the average over its newest this many
# (a smaller scope's is the average over the memories that match, as many as a large scope's common words reach).
LENGTH_SAMPLE = 1_000
# In a scope known to be large, a query word held by more than this share of it is common: its memories are not read
# unless one of the query's rarer words already found them (`_words`).
COMMON_SHARE = 0.05

# Settings local to the statement's implicit transaction (db.read). No parallel workers: starting them costs more
# than a user's scan, and a plan would start them for the branch that does not run. The function the common case
# calls (migration 0013's hybrid_search) sets the same itself.
_VECTOR_SETTINGS = (
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    " set_config('hnsw.ef_search', %(ef)s, true),"
    # The user's share of the table, by the table's row count as last analysed (the index holds current rows only).
    " set_config('hnsw.max_scan_tuples', (SELECT CASE WHEN %(n_known)s::float8 > 0 THEN least(%(max_tuples)s,"
    "  greatest(%(min_tuples)s, ceil(%(margin)s * %(k)s * greatest(reltuples, %(n_known)s) / %(n_known)s)))"
    "  ELSE %(max_tuples)s END::int::text FROM pg_class WHERE oid = 'memories'::regclass), true),"
    " set_config('max_parallel_workers_per_gather', '0', true); "
)
_NO_NEAR = "near AS (SELECT NULL::uuid AS id, NULL::timestamptz AS recorded_at, NULL::float8 AS d WHERE false)"
_NO_WORDS = ("scope AS (SELECT NULL::float8 AS n, NULL::float8 AS dl),"
             " words AS (SELECT NULL::uuid AS id, NULL::timestamptz AS recorded_at, NULL::float8 AS bm25 WHERE false)")


def nearest(
    db: Database, project_id: str, user_id: str, embedding: list[float], *, k: int,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
    embedding_model: str | None = None,
) -> list[Ranked]:
    """The user's `k` memories nearest to `embedding` by cosine distance, best first; with `embedding_model`, only
    vectors of that model (another model's vectors live in another space).

    Exact for most users: distances over the user's own rows, on the half-precision copies in the covering index
    of migration 0009 (a vector index filtered to one of many users keeps almost none of that user's rows). A
    user with LARGE_SCOPE memories or more in scope is a sizeable share of the table, where the approximate index
    (HNSW, migration 0010) walked with pgvector's iterative scan finds them in a fraction of the time. One
    statement: a count capped at LARGE_SCOPE picks the branch, and the other one is never run (a scope this process
    counted a moment ago, small or large and unfiltered, goes without the count and the other branch). A search of
    the past (`as_of`) is exact whatever the size: the index holds current memories only."""
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    settings, near = _near(where, params, embedding, k=k, embedding_model=embedding_model, as_of=as_of)
    with db.read(project_id, cursor_factory=None) as cur:
        cur.execute(f"{settings}WITH {near} SELECT id::text, recorded_at, d FROM near ORDER BY d", params)
        return [Ranked(row[0], row[1], distance=row[2]) for row in cur.fetchall()]


def _near(
    where: str, params: dict[str, Any], embedding: list[float], *, k: int, embedding_model: str | None,
    as_of: datetime | None, counted: bool = False,
) -> tuple[str, str]:
    """The settings to send first, and the CTEs that end in `near(id, recorded_at, d)`: `nearest`'s `k` hits.
    `counted`: a CTE `scope(n)` before these holds the number of memories in the same scope. The vector index's
    walk is bounded by the user's share of the table when it is known (a filter narrows it to a share unknown)."""
    known = _vector_params(params, embedding, k=k, embedding_model=embedding_model)
    same_model = "" if embedding_model is None else " AND embedding_model = %(model)s"
    exact = (f"SELECT id, recorded_at, embedding_half <=> %(qvec)s::halfvec AS d FROM memories"
             f" WHERE {where}{same_model} AND embedding_half IS NOT NULL")
    # "+ 0": an ordering no vector index can serve, so an exact search stays a scan of the user's rows. Equal
    # distances are common (hashed embeddings of a few shared words): the id decides which make the k, whatever
    # order the plan reads the rows in.
    exact_order = "(embedding_half <=> %(qvec)s::halfvec) + 0, id"
    if as_of is not None or (known is not None and known < LARGE_SCOPE):
        # A scope this process counted below LARGE_SCOPE a moment ago is searched exactly, without the approximate
        # branch: unused, it still costs its plan and the opening of the vector index.
        return "", f"near AS MATERIALIZED ({exact} ORDER BY {exact_order} LIMIT %(k)s)"
    # The approximate branch must not be planned on the user's btree (a sort of every row of theirs): its filter
    # is written so no btree can serve it, which leaves the vector index as the one way to an ordered read.
    approximate = exact.replace("user_id = %(user)s", "(user_id = %(user)s) IS TRUE")
    # Relaxed order: the index may hand rows over slightly out of order; they are sorted by the reader.
    approximate_order = "ORDER BY embedding_half <=> %(qvec)s::halfvec LIMIT %(k)s"
    if params["n_known"] is not None:
        # A scope counted large a moment ago (a smaller one went exact above), and not narrowed by a filter, goes to
        # the vector index without being counted again: the count would read LARGE_SCOPE entries of the user's index
        # on every search.
        return _VECTOR_SETTINGS, f"near AS MATERIALIZED ({approximate} {approximate_order})"
    # The count reads the narrow index of the user's current rows, and stops at LARGE_SCOPE.
    mine = ("mine AS (SELECT n FROM scope)" if counted else
            f"mine AS MATERIALIZED (SELECT count(*) AS n FROM (SELECT 1 FROM memories WHERE {where}"
            "  LIMIT %(large)s) capped)")
    return _VECTOR_SETTINGS, (
        f"{mine}, near AS MATERIALIZED ("
        f" ({exact} AND (SELECT n FROM mine) < %(large)s ORDER BY {exact_order} LIMIT %(k)s)"
        " UNION ALL"
        f" ({approximate} AND (SELECT n FROM mine) >= %(large)s {approximate_order}))"
    )


def _vector_params(params: dict[str, Any], embedding: list[float], *, k: int, embedding_model: str | None
                   ) -> float | None:
    """Add what the vector half and _VECTOR_SETTINGS take to `params`; the scope's size if this process knows it."""
    known = _known_size(_size_key(params))
    params.update(qvec=vector_literal(embedding), k=k, model=embedding_model, large=LARGE_SCOPE,
                  ef=str(HNSW_EF_SEARCH), margin=HNSW_SCAN_MARGIN, min_tuples=HNSW_MIN_SCAN_TUPLES,
                  max_tuples=HNSW_MAX_SCAN_TUPLES, n_known=None if "filters" in params else known)
    return known


# Each scope's size as a search last counted it, kept by each process for SCOPE_SIZE_TTL_S. A large scope's
# (LARGE_SCOPE memories or more) stands for its count, with its memories' average length: BM25 needs both, counting
# reads every entry of the user's index, and a minute of writes barely moves the weights they give. Smaller scopes
# are counted each time (their count is cheap, and there a few memories more or less do matter); their kept size only
# picks the vector half's branch and whether the halves run apart (`halves_apart`).
SCOPE_SIZE_TTL_S = 60.0
SCOPE_SIZES_KEPT = 4096
_scope_sizes: dict[tuple[str, str, tuple[str, ...]], tuple[float, float, float | None]] = {}
# A large scope's words as its searches counted them (how many memories hold each), kept while its size is: a common
# word's count reads as many entries as the word has memories, and the same words come back query after query.
WORD_COUNTS_KEPT = 1024
_word_counts: dict[tuple[str, str, tuple[str, ...]], dict[str, float]] = {}


def matching(
    db: Database, project_id: str, user_id: str, query: str, *, k: int,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
) -> list[Ranked]:
    """The user's `k` memories that best match the words of `query` by BM25, best first.

    Postgres's own ranks (ts_rank, ts_rank_cd) do not weigh a word by how rare it is, so "Rosa" (in half of a
    user's memories) counts as much as "cello" (in three). BM25 does: each query word that a memory holds adds
    its inverse document frequency, discounted for long memories. The statistics are the user's own, computed at
    query time: the number of memories in scope (an index-only count), each word's document frequency, and the
    memories' average length: over those that match any word (close enough to the scope's, without reading every
    row), or for a large scope over its newest LENGTH_SAMPLE (its common words match too many to read them all).
    A word counts once per memory (tsvector length counts distinct words): memories are short.

    The current memories are found through their words (memory_words, migration 0010), without reading them; a
    search of the past (`as_of`) or by metadata (`filters`) tests the words of each memory in scope instead.
    A large scope's size and average length may be a minute old (SCOPE_SIZE_TTL_S)."""
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    words, sized = _words(where, params, query, k=k, filters=filters, as_of=as_of)
    if words is None:
        return []
    counted = ", (SELECT array_agg(word) FROM df), (SELECT array_agg(df) FROM df)" if "counted" in params else ""
    with db.read(project_id, cursor_factory=None) as cur:
        cur.execute(f"WITH {words} SELECT id::text, recorded_at, bm25, (SELECT n FROM scope), (SELECT dl FROM scope)"
                    f"{counted} FROM words ORDER BY bm25 DESC, recorded_at DESC, id", params)
        rows = cur.fetchall()
    _keep_size(sized, params, *(rows[0][3:5] if rows else (None, None)))
    if counted and rows:  # a large scope's statement: `sized` is its key
        _keep_word_counts(sized, dict(zip(rows[0][5], rows[0][6], strict=True)))
    return [Ranked(row[0], row[1], score=float(row[2])) for row in rows]


def _words(
    where: str, params: dict[str, Any], query: str, *, k: int, filters: dict[str, Any] | None,
    as_of: datetime | None,
) -> tuple[str | None, tuple[str, str, tuple[str, ...]] | None]:
    """The CTEs that end in `words(id, recorded_at, bm25)`, `matching`'s `k` hits, and `scope(n, dl)`, the number of
    memories in scope and, for a large one, their average length (None when the query has no word to match); and the
    key the scope's size is kept under, if any."""
    terms = or_tsquery(query)
    if not terms:
        return None, None
    params.update(query=query, terms=terms, k=k, k1=BM25_K1, b=BM25_B, large=LARGE_SCOPE, sample=LENGTH_SAMPLE)
    q = ("q AS MATERIALIZED (SELECT lexeme, quote_literal(lexeme)::tsquery AS tq FROM ("
         "  SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(to_tsvector('english', %(query)s))) AS lexeme) w)")
    sized = None
    if as_of is None and not filters:
        sized = _size_key(params)
        known = _known_scope(sized)
        if known is not None and known[0] >= LARGE_SCOPE and known[1] is not None:
            counted = _word_counts.get(sized, {})
            params.update(n=known[0], dl=known[1], common=COMMON_SHARE, counted=list(counted),
                          counts=list(counted.values()))
            return f"{q}, {_LARGE_SCOPE_WORDS}", sized
        # One index-only read per query word: the memories holding it, with what the score needs of them. OFFSET 0
        # keeps each read a lookup of its word, whatever the planner believes of the table (fresh statistics or none).
        found = (
            "post AS MATERIALIZED (SELECT w.lexeme AS word, w.memory_id AS id, w.recorded_at, w.length::float8 AS dl"
            "  FROM q CROSS JOIN LATERAL (SELECT lexeme, memory_id, recorded_at, length FROM memory_words"
            "  WHERE project_id = %(project)s AND user_id = %(user)s AND lexeme = q.lexeme"
            "  AND tier = ANY(%(tiers)s) OFFSET 0) w)"
        )
    else:
        # Each memory in scope is read once, for its length and the query words it holds.
        found = (
            "post AS MATERIALIZED (SELECT word, id, recorded_at, dl FROM ("
            "  SELECT id, recorded_at, length(tsv)::float8 AS dl,"
            "  ARRAY(SELECT q.lexeme FROM q WHERE tsv @@ q.tq) AS words"
            f"  FROM memories WHERE {where} AND tsv @@ to_tsquery('english', %(terms)s)) hit"
            "  CROSS JOIN unnest(hit.words) AS word)"
        )
    # A (word, memory) row for each query word a memory holds; the words' frequencies are counted from them, and each
    # memory's score is the sum of its words'. float8 throughout: numeric is slow.
    return (
        f"{q}, {found},"
        # A large scope's average length is its newest memories' (LENGTH_SAMPLE); a smaller one's, the matches'.
        f" scope AS MATERIALIZED (SELECT n, CASE WHEN n >= %(large)s THEN (SELECT avg(length(tsv))::float8 FROM"
        f"  (SELECT tsv FROM memories WHERE {where} ORDER BY recorded_at DESC, id LIMIT %(sample)s) newest) END AS dl"
        f"  FROM (SELECT count(*)::float8 AS n FROM memories WHERE {where}) counted),"
        " idf AS MATERIALIZED (SELECT word, ln(1.0 + (scope.n - count(*) + 0.5) / (count(*) + 0.5)) AS idf"
        "  FROM post, scope GROUP BY word, scope.n),"
        " held AS MATERIALIZED (SELECT id, recorded_at, dl, sum(idf.idf) AS idf FROM post JOIN idf USING (word)"
        "  GROUP BY id, recorded_at, dl),"
        " avg AS MATERIALIZED (SELECT coalesce((SELECT dl FROM scope), (SELECT avg(dl) FROM held)) AS dl),"
        f" words AS MATERIALIZED (SELECT held.id, held.recorded_at, {_bm25('held.idf', 'held.dl', 'avg.dl')} AS bm25"
        "  FROM held, avg ORDER BY bm25 DESC, held.recorded_at DESC, held.id LIMIT %(k)s)"
    ), sized


def _bm25(idf: str, dl: str, avg_dl: str) -> str:
    """BM25 of a memory holding query words whose idf add up to `idf` (each counted once: memories are short), of
    `dl` distinct words, in a scope whose memories have `avg_dl` on average. Rounded: a sum's last bits follow the
    order its terms came in, and a tie must stay a tie."""
    return (f"round(1e9 * {idf} * (%(k1)s::float8 + 1.0) / (1.0 + %(k1)s::float8 * (1.0 - %(b)s::float8"
            f" + %(b)s::float8 * {dl} / {avg_dl}))) / 1e9")


def _of_words(words: str) -> str:
    """The memories holding the words `words` selects (columns word, idf), each with its length and that idf."""
    return (f"SELECT w.memory_id AS id, w.recorded_at, w.length::float8 AS dl, idf.idf FROM {words}"
            "  CROSS JOIN LATERAL (SELECT memory_id, recorded_at, length FROM memory_words"
            "  WHERE project_id = %(project)s AND user_id = %(user)s AND lexeme = idf.word AND tier = ANY(%(tiers)s)"
            "  OFFSET 0) w")


# The words half of a scope known to be large (its size and average length kept, `_known_scope`). A common word
# (COMMON_SHARE) has more memories than the rest of the query put together, and most hold no other query word: the
# memories holding a rarer word are read and scored first, each looked up under the common words by id. A memory
# holding common words alone scores at most what their idf give a memory of one word; if the k-th best found beats
# that, they are BM25's top k. If not, the common words' memories are read too and all scored: the same answer.
_LARGE_SCOPE_WORDS = (
    "scope AS MATERIALIZED (SELECT %(n)s::float8 AS n, %(dl)s::float8 AS dl),"
    # Each word's memories, as kept (`_word_counts`) or counted.
    " df AS MATERIALIZED (SELECT q.lexeme AS word, coalesce(kept.df, (SELECT count(*) FROM memory_words"
    "  WHERE project_id = %(project)s AND user_id = %(user)s AND lexeme = q.lexeme AND tier = ANY(%(tiers)s))::float8)"
    "  AS df FROM q LEFT JOIN unnest(%(counted)s::text[], %(counts)s::float8[]) AS kept(word, df)"
    "  ON kept.word = q.lexeme),"
    # The rarest word is never common: some word must find the memories.
    " idf AS MATERIALIZED (SELECT word, ln(1.0 + (scope.n - df + 0.5) / (df + 0.5)) AS idf,"
    "  df > %(common)s * scope.n AND row_number() OVER (ORDER BY df, word) > 1 AS common FROM df, scope"
    "  WHERE df > 0),"
    f" post AS MATERIALIZED ({_of_words('idf')} WHERE NOT idf.common),"
    " held AS MATERIALIZED (SELECT id, recorded_at, dl, sum(idf) AS idf FROM post GROUP BY id, recorded_at, dl),"
    " also AS MATERIALIZED (SELECT w.memory_id AS id, sum(idf.idf) AS idf FROM idf CROSS JOIN LATERAL ("
    "  SELECT memory_id FROM memory_words WHERE project_id = %(project)s AND user_id = %(user)s"
    "  AND lexeme = idf.word AND memory_id = ANY(ARRAY(SELECT id FROM held)) OFFSET 0) w WHERE idf.common"
    "  GROUP BY w.memory_id),"
    " found AS MATERIALIZED (SELECT held.id, held.recorded_at,"
    f"  {_bm25('(held.idf + coalesce(also.idf, 0.0))', 'held.dl', 'scope.dl')} AS bm25"
    "  FROM held LEFT JOIN also USING (id), scope ORDER BY bm25 DESC, held.recorded_at DESC, held.id LIMIT %(k)s),"
    " sure AS MATERIALIZED (SELECT NOT EXISTS (SELECT FROM idf WHERE common) OR ((SELECT count(*) FROM found) = %(k)s"
    f"  AND (SELECT min(bm25) FROM found) > {_bm25('(SELECT sum(idf) FROM idf WHERE common)', '1.0', 'scope.dl')})"
    "  AS yes FROM scope),"
    f" more AS MATERIALIZED ({_of_words('idf')} WHERE idf.common),"
    " every AS MATERIALIZED (SELECT id, recorded_at, dl, sum(idf) AS idf FROM ("
    "  SELECT * FROM post UNION ALL SELECT * FROM more) p GROUP BY id, recorded_at, dl),"
    " words AS MATERIALIZED (SELECT id, recorded_at, bm25 FROM found WHERE (SELECT yes FROM sure)"
    f"  UNION ALL (SELECT every.id, every.recorded_at, {_bm25('every.idf', 'every.dl', 'scope.dl')} AS bm25"
    "  FROM every, scope WHERE NOT (SELECT yes FROM sure)"
    "  ORDER BY bm25 DESC, every.recorded_at DESC, every.id LIMIT %(k)s))"
)


def _size_key(params: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    return params["project"], params["user"], tuple(params["tiers"])


def _known_scope(key: tuple[str, str, tuple[str, ...]]) -> tuple[float, float | None] | None:
    """The scope's size and, if large, its memories' average length, as this process last counted them, if within
    SCOPE_SIZE_TTL_S."""
    known = _scope_sizes.get(key)
    return known[1:] if known is not None and time.monotonic() - known[0] < SCOPE_SIZE_TTL_S else None


def _known_size(key: tuple[str, str, tuple[str, ...]]) -> float | None:
    known = _known_scope(key)
    return None if known is None else known[0]


def _keep_size(sized: tuple[str, str, tuple[str, ...]] | None, params: dict[str, Any], n: float | None,
               dl: float | None) -> None:
    """Keep a scope's size counted by a statement (`_words`) for the next searches of the process: a large one's
    stands for its count (BM25's N) and its average length `dl`, a small one's only spares the vector half the
    branch it will not take."""
    if sized is None or n is None or "n" in params:
        return
    _scope_sizes.pop(sized, None)
    if len(_scope_sizes) >= SCOPE_SIZES_KEPT:
        _word_counts.pop(oldest := next(iter(_scope_sizes)), None)
        _scope_sizes.pop(oldest)
    _scope_sizes[sized] = (time.monotonic(), n, dl)
    _word_counts.pop(sized, None)  # counted against the old size


def _keep_word_counts(sized: tuple[str, str, tuple[str, ...]], counts: dict[str, float]) -> None:
    """Keep the words a large scope's search counted, for its next searches while its size is kept."""
    kept = _word_counts.setdefault(sized, {})
    if len(kept) + len(counts) > WORD_COUNTS_KEPT:
        kept.clear()
    kept.update(counts)


def halves_apart(project_id: str, user_id: str, tiers: Sequence[Tier] | None = None) -> bool:
    """Whether this process counted the user's current memories of these tiers at HALVES_APART_SCOPE or more within
    SCOPE_SIZE_TTL_S: then each half of a hybrid search takes a few milliseconds, and they are worth running at once
    (`nearest` and `matching`, then `blend_found`) rather than one after the other in `hybrid`'s one statement."""
    _, params = _scope(project_id, user_id, tiers, None, None)
    known = _known_size(_size_key(params))
    return known is not None and known >= HALVES_APART_SCOPE


def hybrid(
    db: Database, project_id: str, user_id: str, query: str, embedding: list[float] | None, *, k: int, limit: int,
    vector_weight: float, neighbour_weight: float, embedding_model: str | None = None,
    tiers: Sequence[Tier] | None = None, filters: dict[str, Any] | None = None, as_of: datetime | None = None,
    reuse_plan: bool = True,
) -> list[ScoredMemory]:
    """The hybrid search in one statement: `nearest` to `embedding` and `matching` the words of `query` (`k` of each;
    either half is left out without an embedding or without a word to match), blended, then each candidate's session
    neighbours lifted and the `limit` best read in full (`_ranked`). One round trip and one plan for what would be
    three of each.

    The blend gives each candidate one score: each list's scores scaled to 0..1 over its own candidates (the best 1,
    the last 0; all 1 when they are equal), then `vector_weight` of the vector list's plus the rest of the full-text
    list's (0 where a list missed it). Why not reciprocal rank fusion: ranks forget how far apart the scores are. A
    question's rare name can put one memory far ahead in BM25 while the hashed vectors barely tell their top fifty
    apart; RRF scored the two lists' first places alike, and the fused list found less of LoCoMo's evidence than
    BM25 alone.

    Its common case (words and an embedding of a named model, current memories, no filter) runs as the function of
    migration 0011 (as 0012 and 0013 left it), whose plan each server process keeps (`_hybrid_function`);
    `reuse_plan=False` sends the statement as text whatever the case, planned afresh (the two give the same
    answers)."""
    where, params = _scope(project_id, user_id, tiers, filters, as_of)
    words, sized = _words(where, params, query, k=k, filters=filters, as_of=as_of)
    if reuse_plan and words is not None and embedding is not None and sized is not None and embedding_model:
        return _hybrid_function(db, params, embedding, k=k, limit=limit, vector_weight=vector_weight,
                                neighbour_weight=neighbour_weight, embedding_model=embedding_model, sized=sized)
    settings, near = "", _NO_NEAR
    if embedding is not None:
        # The words' scope is the vector half's: its count, when made, decides the branch too.
        settings, near = _near(where, params, embedding, k=k, embedding_model=embedding_model, as_of=as_of,
                               counted=words is not None)
    if words is None and embedding is None:
        return []
    with db.read(project_id) as cur:
        cur.execute(f"{settings}WITH {words or _NO_WORDS}, {near}, "
                    f"{_blended(where, params, vector_weight, limit=limit, neighbour_weight=neighbour_weight)}",
                    params)
        rows = cur.fetchall()
    _keep_size(sized, params, *((rows[0]["scope_n"], rows[0]["scope_dl"]) if rows else (None, None)))
    return _scored(rows)


# The hybrid search's common case (words and an embedding, current memories, no filter) through the function of
# migration 0011 (as 0012 left it): the same statement, its plan kept by each server process and reused (generic),
# where a statement sent as text is planned afresh each time. Called through 0013's overload, which sets the vector
# index's settings and keeps the plan generic itself: the call is the one statement sent. The memories are read in
# full here (the function returns their ids).
_READ_HITS = (f" WITH ORDINALITY h CROSS JOIN LATERAL (SELECT {COLUMNS} FROM memories WHERE id = h.hit_id"
              " AND project_id = %(project)s AND user_id = %(user)s) m ORDER BY h.ordinality")
_HYBRID_FUNCTION = (
    "SELECT m.*, h.hit_score AS score, h.scope_size AS scope_n, h.scope_length AS scope_dl"
    " FROM hybrid_search(%(project)s, %(user)s, %(tiers)s, %(query)s, %(qvec)s::halfvec, %(model)s, %(k)s,"
    " %(limit)s, %(vector_weight)s, %(beta)s, %(large)s, %(n)s, %(dl)s, %(sample)s, %(k1)s, %(b)s,"
    " %(ef)s::integer, %(margin)s, %(min_tuples)s, %(max_tuples)s)" + _READ_HITS
)
# The blend of halves found apart, through the function of migration 0012 (its plan kept, as the search's is: 0013
# made the generic plan a setting of the function).
_BLEND_FUNCTION = (
    "SELECT m.*, h.hit_score AS score, NULL::float8 AS scope_n, NULL::float8 AS scope_dl"
    " FROM blend_hits(%(project)s, %(user)s, %(tiers)s, %(near_ids)s::uuid[], %(near_at)s::timestamptz[],"
    " %(near_d)s::float8[], %(word_ids)s::uuid[], %(word_at)s::timestamptz[], %(word_scores)s::float8[],"
    " %(limit)s, %(vector_weight)s, %(beta)s)" + _READ_HITS
)


def _hybrid_function(
    db: Database, params: dict[str, Any], embedding: list[float], *, k: int, limit: int, vector_weight: float,
    neighbour_weight: float, embedding_model: str, sized: tuple[str, str, tuple[str, ...]],
) -> list[ScoredMemory]:
    args = _function_args(params, embedding, k=k, limit=limit, vector_weight=vector_weight,
                          neighbour_weight=neighbour_weight, embedding_model=embedding_model)
    with db.read(params["project"]) as cur:
        # The function sets the vector index's settings whatever the scope's kept size: its one plan holds both
        # branches, and the count it makes picks one (a scope counted small a minute ago may have grown since).
        cur.execute(_HYBRID_FUNCTION, args)
        rows = cur.fetchall()
    _keep_size(sized, params, *((rows[0]["scope_n"], rows[0]["scope_dl"]) if rows else (None, None)))
    return _scored(rows)


def _function_args(params: dict[str, Any], embedding: list[float], *, k: int, limit: int, vector_weight: float,
                   neighbour_weight: float, embedding_model: str) -> dict[str, Any]:
    """What _HYBRID_FUNCTION takes, from a scope's `params` (`_scope`, then `_words`)."""
    _vector_params(params, embedding, k=k, embedding_model=embedding_model)
    # params holds "n" and "dl" only for a scope known to be large (`_words`): the function counts any other.
    return {**params, "limit": limit, "vector_weight": float(vector_weight), "beta": float(neighbour_weight),
            "n": params.get("n"), "dl": params.get("dl")}


def blend_found(
    db: Database, project_id: str, user_id: str, near: Sequence[Ranked], words: Sequence[Ranked], *, limit: int,
    vector_weight: float, neighbour_weight: float, tiers: Sequence[Tier] | None = None,
) -> list[ScoredMemory]:
    """`hybrid`'s blend, neighbours and rows over halves found apart (`nearest` and `matching`, each in its own
    statement, so they can run at once): the same results in one statement more (migration 0012's blend_hits)."""
    if not near and not words:
        return []
    _, params = _scope(project_id, user_id, tiers, None, None)
    params.update(near_ids=[h.id for h in near], near_at=[h.recorded_at for h in near],
                  near_d=[h.distance for h in near], word_ids=[h.id for h in words],
                  word_at=[h.recorded_at for h in words], word_scores=[h.score for h in words], limit=limit,
                  vector_weight=float(vector_weight), beta=float(neighbour_weight))
    with db.read(project_id) as cur:
        cur.execute(_BLEND_FUNCTION, params)
        return _scored(cur.fetchall())


def _blended(where: str, params: dict[str, Any], vector_weight: float, *, limit: int, neighbour_weight: float) -> str:
    """The CTEs and the select that blend `near(id, recorded_at, d)` and `words(id, recorded_at, bm25)` into
    `candidate(id, score)`, then `_ranked`'s."""
    params.update(vector_weight=float(vector_weight))
    blended = (
        # Each list's range and order in one pass over it (window aggregates); the order each list gave its
        # candidates, the vector list's first, keeps ties among the lifters as the lists had them.
        " candidate AS MATERIALIZED (SELECT id, sum(score) AS score, min(listed) AS listed FROM ("
        "  SELECT id, %(vector_weight)s::float8 * CASE WHEN high > low THEN (high - d) / (high - low) ELSE 1.0 END"
        "   AS score, listed FROM (SELECT id, d, min(d) OVER () AS low, max(d) OVER () AS high,"
        "   row_number() OVER (ORDER BY d, id) AS listed FROM near) by_vector"
        "  UNION ALL SELECT id, (1.0 - %(vector_weight)s::float8)"
        "   * CASE WHEN high > low THEN (bm25 - low) / (high - low) ELSE 1.0 END, 1000000 + listed"
        "   FROM (SELECT id, bm25, min(bm25) OVER () AS low, max(bm25) OVER () AS high,"
        "   row_number() OVER (ORDER BY bm25 DESC, recorded_at DESC, id) AS listed FROM words) by_words) scored"
        "  GROUP BY id),"
    )
    return blended + _ranked(where, params, limit=limit, neighbour_weight=neighbour_weight)


def _ranked(where: str, params: dict[str, Any], *, limit: int, neighbour_weight: float) -> str:
    """The CTEs and the select that take `candidate(id, score)` to the `limit` best memories, read in full with their
    scores, best first (and `scope(n, dl)` as scope_n and scope_dl): each candidate keeps its score, and the memory
    stored just before it and just after it in its session (same tier, same scope) gains `neighbour_weight` times it.
    Ties go to the newer memory, then to the smaller id.

    Only the best 2 x `limit` candidates lift their neighbours (each lift is two index lookups; ties keep the order
    the lists gave them): half of a lower score seldom carries a memory into the top `limit` (bench/locomo.py found
    as much evidence either way)."""
    params.update(beta=neighbour_weight, limit=limit, lifting=2 * limit)
    side = ("(SELECT id FROM memories WHERE {where} AND tier = hit.tier AND session_id = hit.session_id"
            " AND seq {op} hit.seq ORDER BY seq {order} LIMIT 1)")
    return (
        # Every row is reached by its id (a lateral lookup on the primary key), never by scanning the user's.
        " lifter AS MATERIALIZED (SELECT id FROM candidate ORDER BY score DESC, listed LIMIT %(lifting)s),"
        " hit AS MATERIALIZED (SELECT m.id, m.tier, m.session_id, m.seq, candidate.score FROM candidate"
        "  CROSS JOIN LATERAL (SELECT id, tier, session_id, seq FROM memories WHERE id = candidate.id"
        "  AND project_id = %(project)s AND user_id = %(user)s) m WHERE m.session_id IS NOT NULL"
        "  AND %(beta)s::float8 > 0 AND candidate.id IN (SELECT id FROM lifter)),"
        " lifted AS (SELECT id, score FROM candidate"
        "  UNION ALL SELECT beside.id, %(beta)s::float8 * hit.score FROM hit CROSS JOIN LATERAL ("
        f"   {side.format(where=where, op='<', order='DESC')} UNION ALL"
        f"   {side.format(where=where, op='>', order='ASC')}) beside),"
        # Rounded: a sum's last bits follow the order its terms came in, and a tie must stay a tie.
        " total AS MATERIALIZED (SELECT id, round(1e12 * sum(score)) / 1e12 AS score FROM lifted GROUP BY id),"
        # Read in full only what can be in the top `limit` (every memory tied with the last of them included).
        " cut AS (SELECT min(score) AS score FROM (SELECT score FROM total ORDER BY score DESC LIMIT %(limit)s) t)"
        " SELECT m.*, total.score, (SELECT n FROM scope) AS scope_n, (SELECT dl FROM scope) AS scope_dl"
        " FROM total JOIN cut ON total.score >= cut.score"
        f" CROSS JOIN LATERAL (SELECT {COLUMNS} FROM memories WHERE id = total.id AND project_id = %(project)s"
        "  AND user_id = %(user)s) m"
        " ORDER BY total.score DESC, m.created_at DESC, m.id LIMIT %(limit)s"
    )


def _scored(rows: list[dict[str, Any]]) -> list[ScoredMemory]:
    found = []
    for row in rows:
        score = row.pop("score")
        row.pop("scope_n")
        row.pop("scope_dl")
        found.append(as_memory(row, ScoredMemory, score=score))
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
