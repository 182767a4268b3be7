"""The words index (memory_words, migration 0010) on the real Postgres: a memory is listed under the words it has
while it is current, and a search through it ranks exactly as reading every memory would."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from reverie.domain.fields import utcnow
from reverie.domain.tiers import Tier
from reverie.store import memories as store
from reverie.store import memory_search, user_data
from tests.support.memories import remember

pytestmark = pytest.mark.integration


def listed(clients, project_id: str, memory_id: str) -> set[str]:
    with clients.db.cursor(project_id) as cur:
        cur.execute("SELECT lexeme FROM memory_words WHERE project_id = %s AND memory_id = %s", (project_id, memory_id))
        return {row["lexeme"] for row in cur.fetchall()}


def lexemes(clients, project_id: str, text: str) -> set[str]:
    with clients.db.cursor(project_id) as cur:
        cur.execute("SELECT unnest(tsvector_to_array(to_tsvector('english', %s))) AS lexeme", (text,))
        return {row["lexeme"] for row in cur.fetchall()}


def test_a_memory_is_listed_under_its_words_while_it_is_current(clients, project):
    p = project.project_id
    first = remember(clients, p, "ana", "Ana adopted a grey cat named Miso")
    assert listed(clients, p, first) == lexemes(clients, p, "Ana adopted a grey cat named Miso") != set()

    store.edit(clients.db, p, first, "Ana adopted a black dog named Pico", embedding=None, embedding_model=None)
    assert listed(clients, p, first) == lexemes(clients, p, "Ana adopted a black dog named Pico")

    second = remember(clients, p, "ana", "Ana gave Pico to her sister")
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        assert store.supersede(cur, p, "ana", first, second, job_id=None)
    assert listed(clients, p, first) == set()
    assert listed(clients, p, second) == lexemes(clients, p, "Ana gave Pico to her sister")

    assert store.delete(clients.db, p, second)
    assert listed(clients, p, second) == set()


def test_forgetting_a_user_leaves_none_of_their_words_and_keeps_the_others(clients, project):
    p = project.project_id
    remember(clients, p, "ana", "Ana adopted a grey cat named Miso")
    kept = remember(clients, p, "bo", "Bo adopted a grey cat named Miso too")
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        user_data.forget_user(cur, p, "ana")
        cur.execute("SELECT user_id, count(*) FROM memory_words WHERE project_id = %s GROUP BY user_id", (p,))
        assert dict(cur.fetchall()) == {"bo": len(listed(clients, p, kept))}


def test_a_search_through_the_words_index_ranks_as_reading_every_memory_would(clients, project):
    p = project.project_id
    rng = random.Random(7)
    words = ["cat", "Miso", "Lisbon", "sister", "cello", "vet", "grey", "trip", "Rosa", "adopted", "learning", "dogs"]
    for i in range(60):
        tier = (Tier.SEMANTIC, Tier.EPISODIC, Tier.PROCEDURAL)[i % 3]
        remember(clients, p, "ana", " ".join(rng.sample(words, rng.randint(2, 7))) + f" (note {i})", tier, embed=False)
    # A search of the past reads every memory in scope; "now" is a past that holds every current memory.
    now = utcnow() + timedelta(minutes=1)
    for query in ["grey cat Miso at the vet", "a trip to Lisbon with Rosa", "cello", "dogs and cats", "nothing here"]:
        for tiers in (None, [Tier.SEMANTIC, Tier.EPISODIC]):
            through_words = memory_search.matching(clients.db, p, "ana", query, k=10, tiers=tiers)
            reading_all = memory_search.matching(clients.db, p, "ana", query, k=10, tiers=tiers, as_of=now)
            assert [(h.id, round(h.score, 9)) for h in through_words] == \
                [(h.id, round(h.score, 9)) for h in reading_all]
            assert bool(through_words) == (query != "nothing here")


def test_a_large_scopes_size_is_counted_once_a_minute_and_a_small_ones_each_time(clients, project, monkeypatch):
    p = project.project_id
    monkeypatch.setattr(memory_search, "_scope_sizes", {})
    for text in ["Ana plays the cello", "Ana sold her old cello", "Ana lives in Lisbon", "Ana likes figs",
                 "Ana runs on Sundays"]:
        remember(clients, p, "ana", text, embed=False)

    def top_score() -> float:
        return memory_search.matching(clients.db, p, "ana", "cello", k=1)[0].score

    small = top_score()
    remember(clients, p, "ana", "Ana visited Porto", embed=False)
    assert top_score() > small  # six memories now: the word is rarer, counted at once

    monkeypatch.setattr(memory_search, "LARGE_SCOPE", 3)
    counted = top_score()
    remember(clients, p, "ana", "Ana reads at night", embed=False)
    assert top_score() == counted  # the size kept from the last count
    monkeypatch.setattr(memory_search, "SCOPE_SIZE_TTL_S", 0.0)
    assert top_score() > counted  # and counted again once it is old


# Words by the share of memories that hold them: a few common ones, the rest rarer.
COMMONNESS = [("plan", 0.7), ("help", 0.5), ("trip", 0.3), ("Lisbon", 0.12), ("cello", 0.06), ("Miso", 0.03),
              ("garden", 0.2)]
QUERIES = ["help me plan the trip to Lisbon", "plan cello lessons", "Miso", "help plan garden trip",
           "plan help trip", "a cello for Miso in Lisbon"]


@pytest.fixture
def wordy(clients, project, monkeypatch):
    rng = random.Random(11)
    for n in range(160):
        words = [word for word, share in COMMONNESS if rng.random() < share] or ["tea"]
        rng.shuffle(words)
        remember(clients, project.project_id, "ana", " ".join([*words, f"n{n}", *["again"] * (n % 4)]), embed=False)
    monkeypatch.setattr(memory_search, "LARGE_SCOPE", 20)  # ana's 160 memories are a large scope
    monkeypatch.setattr(memory_search, "_scope_sizes", {})
    monkeypatch.setattr(memory_search, "_word_counts", {})
    return project.project_id


def how_words_were_read(clients, project_id: str, query: str, k: int) -> tuple[bool, int, int]:
    """For a scope known to be large: whether the memories of the query's rarer words were enough, how many common
    words the query has, and how many memories were read through the rarer ones."""
    where, params = memory_search._scope(project_id, "ana", None, None, None)
    words, _ = memory_search._words(where, params, query, k=k, filters=None, as_of=None)
    assert "sure AS" in words  # the large scope's statement
    with clients.db.read(project_id, cursor_factory=None) as cur:
        cur.execute(f"WITH {words} SELECT (SELECT yes FROM sure), (SELECT count(*) FROM idf WHERE common),"
                    " (SELECT count(*) FROM post)", params)
        return cur.fetchone()


def test_a_large_scope_looks_common_words_up_by_memory_and_ranks_as_reading_all_of_them(clients, wordy, monkeypatch):
    ways, share = set(), memory_search.COMMON_SHARE
    for query in QUERIES:
        for k in (3, 10, 40):
            monkeypatch.setattr(memory_search, "_scope_sizes", {})
            counted = memory_search.matching(clients.db, wordy, "ana", query, k=k)  # counts, reads every posting
            pruned = memory_search.matching(clients.db, wordy, "ana", query, k=k)  # the size and length kept
            monkeypatch.setattr(memory_search, "COMMON_SHARE", 1.0)  # no word is common: every posting is read
            read_all = memory_search.matching(clients.db, wordy, "ana", query, k=k)
            monkeypatch.setattr(memory_search, "COMMON_SHARE", share)
            assert counted
            assert [(h.id, h.score) for h in pruned] == [(h.id, h.score) for h in counted] == \
                [(h.id, h.score) for h in read_all], (query, k)
            sure, common, read = how_words_were_read(clients, wordy, query, k)
            ways.add((sure, common > 0))
            if common:
                assert read < 160
    # Some queries were answered from the rarer words' memories alone, some had to read the common words' too.
    assert {(True, True), (False, True), (True, False)} <= ways


def test_a_large_scopes_average_length_is_its_newest_memories_and_kept_with_its_size(clients, wordy, monkeypatch):
    monkeypatch.setattr(memory_search, "LENGTH_SAMPLE", 7)
    with clients.db.read(wordy) as cur:
        cur.execute("SELECT avg(length(tsv))::float8 AS dl FROM (SELECT tsv FROM memories WHERE project_id = %s"
                    " AND user_id = 'ana' ORDER BY recorded_at DESC, id LIMIT 7) newest", (wordy,))
        newest = cur.fetchone()["dl"]
        cur.execute("SELECT avg(length(tsv))::float8 AS dl FROM memories WHERE project_id = %s AND user_id = 'ana'",
                    (wordy,))
        assert abs(cur.fetchone()["dl"] - newest) > 0.1  # the sample is not the whole: the test can tell them apart
    embedding = [1.0] + [0.0] * (clients.llm.dimensions - 1)
    for search in (lambda: memory_search.matching(clients.db, wordy, "ana", "plan", k=5),
                   lambda: memory_search.hybrid(clients.db, wordy, "ana", "plan", embedding, k=5, limit=5,
                                                vector_weight=0.2, neighbour_weight=0.5,
                                                embedding_model=clients.llm.embedding_model)):
        monkeypatch.setattr(memory_search, "_scope_sizes", {})
        search()
        ((_, n, dl),) = memory_search._scope_sizes.values()
        assert (n, dl) == (160, pytest.approx(newest))


def test_a_large_scopes_word_counts_are_kept_with_its_size_and_dropped_with_it(clients, wordy, monkeypatch):
    def search() -> list[tuple[str, float]]:
        return [(h.id, h.score) for h in memory_search.matching(clients.db, wordy, "ana", "plan Lisbon", k=10)]

    first = search()  # counts the scope
    assert search() == first  # counts the words
    ((scope, counts),) = memory_search._word_counts.items()
    with clients.db.read(wordy) as cur:
        cur.execute("SELECT lexeme, count(*)::float8 AS n FROM memory_words WHERE project_id = %s AND user_id = 'ana'"
                    " AND lexeme IN ('plan', 'lisbon') GROUP BY lexeme", (wordy,))
        assert counts == {row["lexeme"]: row["n"] for row in cur.fetchall()}
    counts["plan"] = 1.0  # as if "plan" were rare: the next search weighs it by the count kept, without counting
    assert search() != first
    monkeypatch.setattr(memory_search, "SCOPE_SIZE_TTL_S", 0.0)  # the size is counted again, and the words with it
    assert search() == first and scope not in memory_search._word_counts
