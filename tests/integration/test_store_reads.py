"""The store's hot-path reads on the real Postgres: half-precision vectors kept with the stored ones, ranking by
them, fetching ranked rows in order, and single-statement reads that leave the pool in transaction mode."""

from __future__ import annotations

import math

import pytest
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from reverie.domain.tiers import TIERS, Tier
from reverie.store import NO_PROJECT, Database, memory_search, processed_jobs, recall_reads
from reverie.store import memories as store
from reverie.store.db import vector_literal

pytestmark = pytest.mark.integration
DIMENSIONS = 384


def direction(degrees: float) -> list[float]:
    """A unit vector at `degrees` from the first axis, in the plane of the first two."""
    vector = [0.0] * DIMENSIONS
    vector[0], vector[1] = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return vector


def insert(clients, project_id: str, user_id: str, text: str, embedding: list[float] | None,
           tier: Tier = Tier.SEMANTIC) -> str:
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        return store.insert(cur, project_id, user_id, store.NewMemory(tier=tier, text=text, embedding=embedding))


def half_matches_full(clients, project_id: str) -> list[tuple]:
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id::text, embedding_half IS NOT DISTINCT FROM embedding::halfvec(384), embedding_half::text"
            " FROM memories WHERE project_id = %s ORDER BY id",
            (project_id,),
        )
        return cur.fetchall()


def test_half_vectors_are_the_stored_vectors_cast_and_follow_an_update(clients, project):
    p = project.project_id
    first = insert(clients, p, "ana", "Ana keeps bees", clients.llm.embed(["Ana keeps bees"]).vectors[0])
    insert(clients, p, "ana", "Ana has no vector yet", None)
    before = half_matches_full(clients, p)
    assert [same for _, same, _ in before] == [True, True]
    assert sorted(half is None for _, _, half in before) == [False, True]

    refined = "Ana keeps two hives of bees"
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        assert store.update_text(cur, p, "ana", first, refined, embedding=clients.llm.embed([refined]).vectors[0],
                                 embedding_model="offline", job_id=None)
    after = half_matches_full(clients, p)
    assert [same for _, same, _ in after] == [True, True]
    half_of = {memory_id: half for memory_id, _, half in before}, {memory_id: half for memory_id, _, half in after}
    assert half_of[1][first] != half_of[0][first]


def test_nearest_ranks_like_full_precision_cosine(clients, project):
    p = project.project_id
    query = direction(0)
    angles = [70, 5, 40, 20, 55, 85, 30, 10]
    ids = {angle: insert(clients, p, "ana", f"memory at {angle} degrees", direction(angle)) for angle in angles}
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        cur.execute("SELECT id::text FROM memories WHERE project_id = %s ORDER BY embedding <=> %s::vector",
                    (p, vector_literal(query)))
        full_precision = [row[0] for row in cur.fetchall()]
    found = memory_search.nearest(clients.db, p, "ana", query, k=len(angles))
    assert [hit.id for hit in found] == full_precision == [ids[a] for a in sorted(angles)]
    assert [hit.id for hit in memory_search.nearest(clients.db, p, "ana", query, k=3)] == full_precision[:3]


def test_nearest_leaves_out_rows_without_a_vector_and_superseded_ones(clients, project):
    p = project.project_id
    kept = insert(clients, p, "ana", "Ana lives in Berlin", direction(10))
    old = insert(clients, p, "ana", "Ana lives in Porto", direction(5))
    insert(clients, p, "ana", "Ana has no vector", None)
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        store.supersede(cur, p, "ana", old, kept, job_id=None)
    assert [hit.id for hit in memory_search.nearest(clients.db, p, "ana", direction(0), k=10)] == [kept]


def test_matching_ranks_by_words_within_scope(clients, project):
    p = project.project_id
    best = insert(clients, p, "ana", "Rosa the sister of Ana lives in Lisbon near Rosa's sister", None)
    some = insert(clients, p, "ana", "Ana visited Lisbon", None)
    insert(clients, p, "ana", "Ana likes tea", None)
    insert(clients, p, "ben", "Ben's sister Rosa lives in Lisbon", None)
    found = memory_search.matching(clients.db, p, "ana", "sister Rosa Lisbon", k=10)
    assert [hit.id for hit in found] == [best, some]
    assert memory_search.matching(clients.db, p, "ana", "? !", k=10) == []


def test_the_winners_are_read_best_first_skipping_gone_rows_and_other_users(clients, project):
    p = project.project_id
    a = insert(clients, p, "ana", "fact alpha", None)
    b = insert(clients, p, "ana", "fact beta", None)
    gone = insert(clients, p, "ana", "fact beta gone", None)
    insert(clients, p, "ben", "fact beta of ben", None)
    assert store.delete(clients.db, p, gone)
    found = memory_search.hybrid(clients.db, p, "ana", "fact beta", None, k=10, limit=10, vector_weight=0.5,
                                 neighbour_weight=0.5)
    assert [m.id for m in found] == [b, a]
    assert found[0].score > found[1].score
    assert memory_search.hybrid(clients.db, p, "ana", "? !", None, k=10, limit=10, vector_weight=0.5,
                                neighbour_weight=0.5) == []


def test_a_read_runs_outside_a_transaction_and_leaves_the_connection_transactional(clients, project):
    db = Database(clients.database_url(), max_connections=1)
    try:
        with db.read(project.project_id) as cur:
            cur.execute("SELECT 1 AS one")
            # No transaction was opened around the statement, so there is none to commit.
            assert cur.connection.get_transaction_status() == TRANSACTION_STATUS_IDLE
            assert cur.fetchone()["one"] == 1
        # The one connection of this pool goes back in transaction mode: a failed transaction leaves nothing.
        with pytest.raises(RuntimeError), db.transaction(project.project_id) as conn, conn.cursor() as cur:
            assert not conn.autocommit
            store.insert(cur, project.project_id, "ana", store.NewMemory(tier=Tier.SEMANTIC, text="never kept"))
            raise RuntimeError("abandon")
        assert memory_search.matching(clients.db, project.project_id, "ana", "never kept", k=5) == []
    finally:
        db.close()


def test_statements_in_a_project_run_without_jit_and_leave_the_connection_as_it_was(clients, project):
    db = Database(clients.database_url(), max_connections=1)  # one connection: the same one every time
    try:
        with db.read(project.project_id) as cur:
            cur.execute("SELECT current_setting('jit') AS jit")
            assert cur.fetchone()["jit"] == "off"
        with db.cursor(project.project_id) as cur:
            cur.execute("SELECT current_setting('jit') AS jit")
            assert cur.fetchone()["jit"] == "off"
        # Local to each statement's transaction: the server's own setting (on by default) is back after it.
        with db.read(NO_PROJECT) as cur:
            cur.execute("SELECT current_setting('jit') AS jit, boot_val FROM pg_settings WHERE name = 'jit'")
            row = cur.fetchone()
            assert row["jit"] == row["boot_val"] == "on"
    finally:
        db.close()


def test_a_failed_read_gives_its_connection_back_usable(clients):
    db = Database(clients.database_url(), max_connections=1)
    try:
        with pytest.raises(Exception, match="division by zero"), db.read(NO_PROJECT) as cur:
            cur.execute("SELECT 1 / 0")
        with db.read(NO_PROJECT) as cur:
            cur.execute("SELECT 2 AS two")
            assert cur.fetchone()["two"] == 2
        with db.transaction(NO_PROJECT) as conn:
            assert not conn.autocommit
    finally:
        db.close()


def test_rows_come_as_plain_dicts_by_every_way_of_fetching(clients, project):
    with clients.db.read(project.project_id) as cur:
        cur.execute("SELECT g AS n, g * 2 AS twice FROM generate_series(1, 6) g ORDER BY g")
        first = cur.fetchone()
        assert type(first) is dict and first == {"n": 1, "twice": 2}
        assert cur.fetchmany(2) == [{"n": 2, "twice": 4}, {"n": 3, "twice": 6}]
        assert next(iter(cur)) == {"n": 4, "twice": 8}
        assert cur.fetchall() == [{"n": 5, "twice": 10}, {"n": 6, "twice": 12}]
        assert cur.fetchone() is None


def test_the_rules_and_the_learned_jobs_come_in_one_statement_as_each_read_alone_gives_them(clients, project,
                                                                                           monkeypatch):
    p = project.project_id
    rules = [insert(clients, p, "ana", f"Answer Ana in Portuguese, rule {i}", None, Tier.PROCEDURAL) for i in range(4)]
    insert(clients, p, "ana", "Ana lives in Porto", None)
    insert(clients, p, "rui", "Answer Rui in French", None, Tier.PROCEDURAL)
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        for job, tiers in (("all-three", TIERS), ("two-of-three", TIERS[:2])):
            for tier in tiers:
                cur.execute("INSERT INTO processed_jobs (job_id, tier, project_id, user_id, status)"
                            " VALUES (%s, %s, %s, 'ana', 'done')", (job, tier.value, p))
    jobs = ["all-three", "two-of-three", "unknown"]

    statements = []
    real = clients.db.read

    def counted(*args, **kwargs):
        statements.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(clients.db, "read", counted)
    found, learned = recall_reads.rules_and_learned(clients.db, p, "ana", limit=3, job_ids=jobs)
    monkeypatch.undo()
    assert len(statements) == 1
    assert [m.id for m in found] == [m.id for m in store.current_by_tier(clients.db, p, "ana", Tier.PROCEDURAL, 3)]
    assert [m.id for m in found] == rules[::-1][:3] and all(m.tier is Tier.PROCEDURAL for m in found)
    assert learned == processed_jobs.learned(clients.db, p, "ana", jobs) == {"all-three"}
    # A user with no rule still learns which jobs are learned; no job asked, none learned.
    assert recall_reads.rules_and_learned(clients.db, p, "eva", limit=3, job_ids=jobs) == ([], set())
    assert recall_reads.rules_and_learned(clients.db, p, "ana", limit=3, job_ids=[])[1] == set()
