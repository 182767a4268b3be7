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
