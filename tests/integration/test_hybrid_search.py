"""The hybrid search's one statement (memory_search.hybrid) against its two halves run apart: the blend it computes in
SQL is the blend written out below, over what `nearest` and `matching` find on their own, whatever the weight and
whichever half is missing."""

from __future__ import annotations

import math
import random
import time

import pytest

from reverie.chat import recall
from reverie.domain.tiers import Tier
from reverie.store import memory_search
from tests.support.memories import remember

pytestmark = pytest.mark.integration

WORDS = ["Ana", "Rosa", "Lisbon", "cello", "sister", "cat", "Miso", "garden", "Porto", "tea", "rain", "music", "train",
         "bakery", "budget"]
QUERIES = ["Where does Rosa live?", "Ana's cat Miso", "cello music on a rainy day", "budget for the garden",
           "tea", "? !"]


def written_out(near: list[memory_search.Ranked], words: list[memory_search.Ranked], weight: float) -> dict:
    """Each list's scores scaled to 0..1 over its own hits (all 1 when equal), `weight` of the vector list's plus the
    rest of the words list's, 0 where a list missed the memory."""

    def unit(scores: dict[str, float]) -> dict[str, float]:
        low, high = min(scores.values(), default=0.0), max(scores.values(), default=0.0)
        return {i: (v - low) / (high - low) if high > low else 1.0 for i, v in scores.items()}

    by_vector = unit({hit.id: -hit.distance for hit in near})
    by_words = unit({hit.id: hit.score for hit in words})
    return {i: weight * by_vector.get(i, 0.0) + (1 - weight) * by_words.get(i, 0.0)
            for i in dict.fromkeys([*by_vector, *by_words])}


@pytest.fixture
def ana(clients, project):
    rng = random.Random(7)
    for n in range(60):
        # Few distinct words, so scores tie often; some not embedded at all; the episodes in three sessions.
        text = " ".join(rng.sample(WORDS, rng.randint(2, 5))) + f" ({n % 5})"
        tier = rng.choice([Tier.EPISODIC, Tier.SEMANTIC])
        remember(clients, project.project_id, "ana", text, tier, embed=n % 9 != 0,
                 session_id=f"s{n % 3}" if tier is Tier.EPISODIC else None)
    remember(clients, project.project_id, "ben", "Rosa lives in Lisbon with her cat Miso")
    return project.project_id


@pytest.mark.parametrize("weight", [0.0, 0.2, 0.5, 1.0])
def test_the_one_statement_blends_what_the_two_halves_find_apart(clients, ana, weight):
    db, model = clients.db, clients.llm.embedding_model
    for query in QUERIES:
        embedding = clients.llm.embed([query]).vectors[0]
        near = memory_search.nearest(db, ana, "ana", embedding, k=50, embedding_model=model)
        words = memory_search.matching(db, ana, "ana", query, k=50)
        expected = written_out(near, words, weight)
        # No neighbours, and room for every candidate: the scores are the blend's own.
        found = memory_search.hybrid(db, ana, "ana", query, embedding, k=50, limit=200, vector_weight=weight,
                                     neighbour_weight=0.0, embedding_model=model)
        assert {m.id: m.score for m in found} == pytest.approx(expected, abs=1e-12), query
        assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)
        assert {m.user_id for m in found} <= {"ana"}


def test_either_half_alone_is_blended_as_the_only_list(clients, ana):
    db, model = clients.db, clients.llm.embedding_model
    query = "Ana's cat Miso"
    embedding = clients.llm.embed([query]).vectors[0]
    words_only = memory_search.hybrid(db, ana, "ana", query, None, k=50, limit=200, vector_weight=0.2,
                                      neighbour_weight=0.0)
    expected = written_out([], memory_search.matching(db, ana, "ana", query, k=50), 0.2)
    assert {m.id: m.score for m in words_only} == pytest.approx(expected, abs=1e-12)
    assert max(expected.values()) == pytest.approx(0.8)
    vector_only = memory_search.hybrid(db, ana, "ana", "? !", embedding, k=50, limit=200, vector_weight=0.2,
                                       neighbour_weight=0.0, embedding_model=model)
    near = memory_search.nearest(db, ana, "ana", embedding, k=50, embedding_model=model)
    assert {m.id: m.score for m in vector_only} == pytest.approx(written_out(near, [], 0.2), abs=1e-12)
    assert memory_search.hybrid(db, ana, "ana", "? !", None, k=50, limit=10, vector_weight=0.2,
                                neighbour_weight=0.5) == []


def test_neighbours_only_add_to_the_blend(clients, ana):
    db, model = clients.db, clients.llm.embedding_model
    query = "cello music on a rainy day"
    embedding = clients.llm.embed([query]).vectors[0]
    blended = {m.id: m.score for m in memory_search.hybrid(
        db, ana, "ana", query, embedding, k=50, limit=200, vector_weight=0.2, neighbour_weight=0.0,
        embedding_model=model)}
    top = memory_search.hybrid(db, ana, "ana", query, embedding, k=50, limit=5, vector_weight=0.2,
                               neighbour_weight=0.5, embedding_model=model)
    assert len(top) == 5 and [m.score for m in top] == sorted((m.score for m in top), reverse=True)
    assert all(m.score >= blended.get(m.id, 0.0) - 1e-12 for m in top)
    assert any(m.score > blended.get(m.id, 0.0) + 1e-9 for m in top)  # an episode lifted by its session's hits


@pytest.mark.parametrize("large_scope", [20, memory_search.LARGE_SCOPE])  # the vector index's branch, or exact
def test_a_user_known_to_have_many_memories_gets_the_same_results_from_halves_run_at_once(
        clients, ana, monkeypatch, large_scope):
    monkeypatch.setattr(memory_search, "HALVES_APART_SCOPE", 20)  # ana's 60 memories are many
    monkeypatch.setattr(memory_search, "LARGE_SCOPE", large_scope)
    hybrid = memory_search.hybrid
    for query in QUERIES[:4]:
        monkeypatch.setattr(memory_search, "_scope_sizes", {})
        assert not memory_search.halves_apart(ana, "ana", recall.SEARCH_TIERS)
        one_statement = recall.search(clients, ana, "ana", query, tiers=recall.SEARCH_TIERS)  # counts the scope
        assert memory_search.halves_apart(ana, "ana", recall.SEARCH_TIERS)
        monkeypatch.setattr(memory_search, "hybrid", None)  # the halves' way only
        at_once = recall.search(clients, ana, "ana", query, tiers=recall.SEARCH_TIERS)
        monkeypatch.setattr(memory_search, "hybrid", hybrid)
        assert [(m.id, m.score) for m in at_once] == [(m.id, m.score) for m in one_statement], query
        assert len(at_once) == 10


def test_a_scope_counted_small_a_moment_ago_is_still_searched_exactly(clients, ana, monkeypatch):
    monkeypatch.setattr(memory_search, "_scope_sizes", {})
    db, model = clients.db, clients.llm.embedding_model
    embedding = clients.llm.embed(["Where does Rosa live?"]).vectors[0]
    before = memory_search.nearest(db, ana, "ana", embedding, k=50, embedding_model=model)
    memory_search.matching(db, ana, "ana", "Where does Rosa live?", k=50)  # counts the scope: 60, small
    after = memory_search.nearest(db, ana, "ana", embedding, k=50, embedding_model=model)
    assert len(before) == 50 and [h.id for h in after] == [h.id for h in before]


def test_a_scope_counted_large_a_moment_ago_goes_to_the_vector_index_without_being_counted_again(
        clients, ana, monkeypatch):
    import psycopg2.extensions

    from reverie.store.db import _scoped

    monkeypatch.setattr(memory_search, "_scope_sizes", {})
    monkeypatch.setattr(memory_search, "LARGE_SCOPE", 20)  # ana's 60 memories are a large scope
    db, model = clients.db, clients.llm.embedding_model
    embedding = clients.llm.embed(["Where does Rosa live?"]).vectors[0]
    sent: list[bytes] = []
    scoped = _scoped(psycopg2.extensions.cursor)
    execute = scoped.execute

    def recorded(self, query, vars=None):
        sent.append(self.mogrify(query, vars))
        return execute(self, query, vars)

    monkeypatch.setattr(scoped, "execute", recorded)

    def nearest(filters=None) -> tuple[list[str], bytes]:
        sent.clear()
        found = memory_search.nearest(db, ana, "ana", embedding, k=50, embedding_model=model, filters=filters)
        assert len(sent) == 1
        return [h.id for h in found], sent[0]

    counted, statement = nearest()
    assert b"count(*)" in statement and b"IS TRUE" in statement  # both branches, the count picks
    memory_search.matching(db, ana, "ana", "Where does Rosa live?", k=50)  # keeps the scope's size: 60, large
    _, params = memory_search._scope(ana, "ana", None, None, None)
    assert memory_search._known_size(memory_search._size_key(params)) == 60
    again, statement = nearest()
    assert b"count(*)" not in statement and b"IS TRUE" in statement and b"+ 0" not in statement
    assert again == counted and len(again) >= 40
    # A filter narrows the scope to a size unknown: it is counted again (ana's memories carry no metadata).
    filtered, statement = nearest(filters={"source": "nowhere"})
    assert b"count(*)" in statement and filtered == []


def test_the_vector_index_may_visit_more_rows_the_smaller_a_large_users_share_of_the_table(
        clients, engines, ana, monkeypatch):
    import psycopg2

    with psycopg2.connect(engines.database_url) as conn, conn.cursor() as cur:  # the table's row count, as analysed
        cur.execute("ANALYZE memories")
    monkeypatch.setattr(memory_search, "LARGE_SCOPE", 0)  # any scope is large: the vector index's branch is planned

    def visited_at_most(known: float | None, filters: dict | None = None) -> tuple[int, float]:
        where, params = memory_search._scope(ana, "ana", recall.SEARCH_TIERS, filters, None)
        kept = {} if known is None else {memory_search._size_key(params): (time.monotonic(), known, None)}
        monkeypatch.setattr(memory_search, "_scope_sizes", kept)
        settings, _ = memory_search._near(where, params, clients.llm.embed(["tea"]).vectors[0], k=50,
                                          embedding_model=None, as_of=None)
        with clients.db.read(ana, cursor_factory=None) as cur:
            cur.execute(settings + "SELECT current_setting('hnsw.max_scan_tuples')::int,"
                        " (SELECT reltuples FROM pg_class WHERE oid = 'memories'::regclass)", params)
            return cur.fetchone()

    assert visited_at_most(None)[0] == memory_search.HNSW_MAX_SCAN_TUPLES  # not counted yet: the most
    _, rows = visited_at_most(1.0)
    assert rows >= 61  # ana's, ben's and other tests' memories
    # HNSW_SCAN_MARGIN times what it takes to meet 50 of the user's rows at their share (a tenth), within the bounds.
    margin = memory_search.HNSW_SCAN_MARGIN
    assert visited_at_most(rows / 10) == (math.ceil(margin * 50 * rows / (rows / 10)), rows)
    assert margin * 500 <= visited_at_most(rows / 10)[0] <= margin * 500 + 1
    assert visited_at_most(rows)[0] == memory_search.HNSW_MIN_SCAN_TUPLES  # the whole table is theirs
    assert visited_at_most(rows / 1000)[0] == memory_search.HNSW_MAX_SCAN_TUPLES
    # A filter leaves the share of the table unknown: the most.
    assert visited_at_most(rows / 10, filters={"source": "email"})[0] == memory_search.HNSW_MAX_SCAN_TUPLES


@pytest.mark.parametrize("large_scope", [20, memory_search.LARGE_SCOPE])  # the vector index's branch, or exact
def test_the_function_with_its_kept_plan_answers_as_the_statement_sent_as_text(clients, ana, monkeypatch, large_scope):
    """The common case runs as migration 0011's function (its plan kept and reused), every other case as text: the
    two give the same memories with the same scores, whatever the weights, and whether the scope's size is counted
    or already known."""
    monkeypatch.setattr(memory_search, "LARGE_SCOPE", large_scope)
    db, model = clients.db, clients.llm.embedding_model
    for query in QUERIES[:5]:
        embedding = clients.llm.embed([query]).vectors[0]
        for weight, beta, limit in [(0.2, 0.5, 10), (0.0, 0.0, 200), (1.0, 0.5, 3), (0.5, 1.0, 60)]:
            answers = []
            for reuse_plan in (False, True, True):  # the third with the scope's size kept by the second
                if reuse_plan is False:
                    monkeypatch.setattr(memory_search, "_scope_sizes", {})
                found = memory_search.hybrid(db, ana, "ana", query, embedding, k=50, limit=limit,
                                             vector_weight=weight, neighbour_weight=beta, embedding_model=model,
                                             tiers=recall.SEARCH_TIERS, reuse_plan=reuse_plan)
                answers.append([(m.id, m.score, m.text, m.tier, m.session_id, m.created_at) for m in found])
            assert answers[0] and answers[1] == answers[0] and answers[2] == answers[0], (query, weight, beta)


def test_the_function_is_what_the_common_case_runs_and_it_keeps_row_level_security(clients, ana, monkeypatch):
    from reverie.store.db import DictCursor, _scoped
    from reverie.store.projects import create_project

    db, model = clients.db, clients.llm.embedding_model
    embedding = clients.llm.embed(["Rosa"]).vectors[0]
    sent: list[bytes] = []
    scoped = _scoped(DictCursor)
    execute = scoped.execute

    def recorded(self, query, vars=None):
        sent.append(self.mogrify(query, vars))
        return execute(self, query, vars)

    monkeypatch.setattr(scoped, "execute", recorded)
    found = memory_search.hybrid(db, ana, "ana", "Rosa", embedding, k=50, limit=10, vector_weight=0.2,
                                 neighbour_weight=0.5, embedding_model=model)
    # One statement: the function sets the vector index's settings and keeps its plan generic itself.
    assert found and len(sent) == 1 and b"hybrid_search(" in sent[0] and b"set_config" not in sent[0]
    # Called in another project's scope, the function reads nothing of this one (SECURITY INVOKER).
    other = "p-other-" + ana
    create_project(db, other)
    for scope, expected in ((other, 0), (ana, len(found))):
        with db.read(scope) as cur:
            cur.execute("SELECT count(*) AS n FROM hybrid_search(%s, 'ana', ARRAY['episodic','semantic'], 'Rosa',"
                        " %s::halfvec, %s, 50, 10, 0.2, 0.5, 20000, NULL, NULL, 1000, 1.2, 0.75, 100, 6, 2000, 20000)",
                        (ana, memory_search.vector_literal(embedding), model))
            assert cur.fetchone()["n"] == expected, scope


def test_the_blend_of_halves_found_apart_keeps_row_level_security(clients, ana):
    db, model = clients.db, clients.llm.embedding_model
    embedding = clients.llm.embed(["Rosa"]).vectors[0]
    near = memory_search.nearest(db, ana, "ana", embedding, k=50, embedding_model=model)
    words = memory_search.matching(db, ana, "ana", "Rosa", k=50)
    found = memory_search.blend_found(db, ana, "ana", near, words, limit=10, vector_weight=0.2, neighbour_weight=0.5)
    assert len(found) == 10
    other = "p-other-" + ana
    from reverie.store.projects import create_project

    create_project(db, other)
    # Called in another project's scope with this one's hits, the function reads nothing of them (SECURITY INVOKER):
    # the neighbours it looks up and the order it reads are the caller's to see.
    with db.read(other) as cur:
        cur.execute("SELECT count(*) AS n FROM blend_hits(%s, 'ana', ARRAY['episodic','semantic'], %s::uuid[],"
                    " %s::timestamptz[], %s::float8[], %s::uuid[], %s::timestamptz[], %s::float8[], 10, 0.2, 0.5)",
                    (ana, [h.id for h in near], [h.recorded_at for h in near], [h.distance for h in near],
                     [h.id for h in words], [h.recorded_at for h in words], [h.score for h in words]))
        assert cur.fetchone()["n"] == 0


def test_the_function_sets_the_vector_index_settings_the_statement_sent_as_text_sends(clients, engines, ana,
                                                                                       monkeypatch):
    """Migration 0013's hybrid_search sets for itself what _VECTOR_SETTINGS sends before the statement sent as text,
    local to the transaction; the generic plan is a setting of the function, gone when it returns."""
    import psycopg2

    from reverie.store.db import DictCursor

    with psycopg2.connect(engines.database_url) as conn, conn.cursor() as cur:  # the table's row count, as analysed
        cur.execute("ANALYZE memories")
    monkeypatch.setattr(memory_search, "LARGE_SCOPE", 1)  # any scope is large: its size bounds the index's walk
    db, model = clients.db, clients.llm.embedding_model
    embedding = clients.llm.embed(["tea"]).vectors[0]
    show = ("SELECT current_setting('hnsw.iterative_scan') AS scan, current_setting('hnsw.ef_search') AS ef,"
            " current_setting('hnsw.max_scan_tuples') AS visited,"
            " current_setting('max_parallel_workers_per_gather') AS workers,"
            " current_setting('plan_cache_mode') AS plans,"
            " (SELECT reltuples FROM pg_class WHERE oid = 'memories'::regclass) AS rows")

    def settings(known: float | None) -> tuple[dict, dict]:
        where, params = memory_search._scope(ana, "ana", recall.SEARCH_TIERS, None, None)
        kept = {} if known is None else {memory_search._size_key(params): (time.monotonic(), known, 6.0)}
        monkeypatch.setattr(memory_search, "_scope_sizes", kept)
        memory_search._words(where, params, "tea", k=50, filters=None, as_of=None)
        args = memory_search._function_args(params, embedding, k=50, limit=10, vector_weight=0.2,
                                            neighbour_weight=0.5, embedding_model=model)
        with db.transaction(ana) as conn, conn.cursor(cursor_factory=DictCursor) as cur:
            cur.execute(memory_search._HYBRID_FUNCTION, args)
            assert cur.fetchall(), known
            cur.execute(show)
            by_function = cur.fetchone()
        sent, _ = memory_search._near(where, params, embedding, k=50, embedding_model=model, as_of=None)
        assert sent  # a large scope's statement goes with the settings
        with db.transaction(ana) as conn, conn.cursor(cursor_factory=DictCursor) as cur:
            cur.execute(sent + show, params)
            by_text = cur.fetchone()
        return by_function, by_text

    by_function, by_text = settings(None)
    rows = by_function["rows"]
    assert rows >= 61  # ana's, ben's and other tests' memories
    both = {None: (by_function, by_text)} | {known: settings(known) for known in (rows / 10, rows / 3, rows)}
    for known, (by_function, by_text) in both.items():
        assert by_function == by_text and by_function["plans"] == "auto", known  # not set past the function
        assert by_function["workers"] == "0" and by_function["scan"] == "relaxed_order"
        assert by_function["ef"] == str(memory_search.HNSW_EF_SEARCH)
    # The walk follows the user's share of the table: a tenth of it, the margin times five hundred rows.
    assert int(both[rows / 10][0]["visited"]) == math.ceil(memory_search.HNSW_SCAN_MARGIN * 50 * rows / (rows / 10))
    assert int(both[None][0]["visited"]) == memory_search.HNSW_MAX_SCAN_TUPLES
