"""Recall on the real engines: hybrid search by meaning and by words, the context's parts and budget, scope,
and what is left out when an engine or the embeddings fail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from chat_support import RecordingLLM, swapped

from reverie import recall, working_memory
from reverie.llm import LLMUnavailable, estimate_tokens
from reverie.models import Tier, Turn, utcnow
from reverie.store import Database
from reverie.store import memories as store

pytestmark = pytest.mark.integration


def remember(clients, project_id, user_id, text, tier=Tier.SEMANTIC, *, embed=True):
    vector = clients.llm.embed([text]).vectors[0] if embed else None
    with clients.db.transaction() as conn, conn.cursor() as cur:
        return store.insert(cur, project_id, user_id, store.NewMemory(
            tier=tier, text=text, embedding=vector, embedding_model=clients.llm.embedding_model))


def test_search_fuses_meaning_and_words(clients, project):
    p = project.project_id
    by_words = remember(clients, p, "ana", "Ana's sister Rosa lives in Lisbon", embed=False)
    by_both = remember(clients, p, "ana", "Rosa, Ana's sister, moved to Lisbon last spring")
    remember(clients, p, "ana", "Ana is learning the cello")
    found = recall.search(clients, p, "ana", "Where does my sister Rosa live?", limit=5)
    ids = [m.id for m in found]
    assert ids[0] == by_both and by_words in ids
    assert found == sorted(found, key=lambda m: -m.score)


def test_the_vector_half_finds_all_of_a_users_nearest_memories_even_when_the_planner_likes_the_vector_index(
    clients, project,
):
    p = project.project_id
    target = remember(clients, p, "ana", "Ana adopted a grey cat named Miso")
    for i in range(30):
        remember(clients, p, "ana", f"Ana's meeting number {i} was about quarterly budgets")
        remember(clients, p, f"other-{i}", "Ana adopted a grey cat named Miso")  # same text, other users
    # On a big table the planner walks the global HNSW index, whose nearest rows are mostly other users';
    # on this small one it has to be pushed there.
    url = clients.database_url()
    url += ("&" if "?" in url else "?") + "options=-c%20enable_seqscan%3Doff%20-c%20enable_sort%3Doff"
    planner = Database(url, max_connections=2)
    try:
        with swapped(clients):
            clients._db = planner
            hits, embedded = recall.vector_hits(clients, p, "ana", "adopted cat Miso", tiers=recall.SEARCH_TIERS)
    finally:
        planner.close()
    assert embedded and hits[0].id == target
    assert {m.user_id for m in hits} == {"ana"} and len(hits) == 31


def test_search_is_scoped_to_the_project_and_user(clients, project):
    from reverie.store.projects import create_project

    create_project(clients.db, project.project_id + "-x")
    remember(clients, project.project_id, "ben", "Ben's sister Rosa lives in Lisbon")
    remember(clients, project.project_id + "-x", "ana", "Ana's sister Rosa lives in Lisbon")
    assert recall.search(clients, project.project_id, "ana", "sister Rosa Lisbon") == []


def test_superseded_memories_are_not_recalled(clients, project):
    p = project.project_id
    old = remember(clients, p, "ana", "Ana lives in Porto")
    new = remember(clients, p, "ana", "Ana lives in Berlin")
    with clients.db.transaction() as conn, conn.cursor() as cur:
        store.supersede(cur, p, "ana", old, new, job_id=None)
    assert [m.id for m in recall.search(clients, p, "ana", "where does Ana live")] == [new]


def test_the_context_has_each_part_and_fits_its_budget(clients, project):
    p = project.project_id
    rule = remember(clients, p, "ana", "Answer in short bullet points", Tier.PROCEDURAL)
    fact = remember(clients, p, "ana", "Ana's sister Rosa lives in Lisbon")
    for i in range(40):
        remember(clients, p, "ana", f"Ana visited Lisbon museum number {i} with her sister and loved the tiles")
    with clients.db.transaction() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO narratives (project_id, user_id, version, text) VALUES (%s, 'ana', 2, %s)",
                    (p, "Ana is a teacher from Porto. " * 30))
    pipe = clients.valkey.pipeline(transaction=False)
    working_memory.append_turns(pipe, p, "ana", "s1", [Turn(role="user", content=f"turn {i} " * 20)
                                                        for i in range(10)], 20, 600)
    pipe.execute()

    context = recall.build_context(clients, p, "ana", query="Where does Rosa live?", session_id="s1", max_tokens=400)
    assert context.narrative and context.narrative_version == 2
    assert [m.id for m in context.rules] == [rule]
    assert fact in [m.id for m in context.memories]
    assert 0 < len(context.recent_turns) < 10 and context.recent_turns[-1].content.startswith("turn 9")
    used = (estimate_tokens(context.narrative) + sum(estimate_tokens(m.text) for m in context.rules + context.memories)
            + sum(estimate_tokens(t.content) for t in context.recent_turns))
    assert context.tokens == used <= 400
    assert context.degraded == []


def test_without_a_query_the_context_lists_the_newest_memories(clients, project):
    p = project.project_id
    ids = [remember(clients, p, "ana", f"fact number {i} about Ana") for i in range(3)]
    remember(clients, p, "ana", "Answer briefly", Tier.PROCEDURAL)
    context = recall.build_context(clients, p, "ana", max_tokens=1500)
    assert [m.id for m in context.memories] == list(reversed(ids))
    assert context.recent_turns == []


def test_a_stale_narrative_is_left_out(clients, project):
    with clients.db.transaction() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO narratives (project_id, user_id, version, text, generated_at)"
                    " VALUES (%s, 'ana', 1, 'old story', %s)", (project.project_id, utcnow() - timedelta(days=30)))
    assert recall.build_context(clients, project.project_id, "ana", max_tokens=500).narrative is None


def test_with_postgres_down_the_context_keeps_the_recent_turns_and_says_what_is_missing(clients, project):
    p = project.project_id
    pipe = clients.valkey.pipeline(transaction=False)
    working_memory.append_turns(pipe, p, "ana", "s1", [Turn(role="user", content="hello")], 20, 600)
    pipe.execute()
    with swapped(clients, postgres_down=True):
        context = recall.build_context(clients, p, "ana", query="hello", session_id="s1", max_tokens=500)
    assert [t.content for t in context.recent_turns] == ["hello"]
    assert context.memories == [] and context.rules == [] and context.degraded == ["postgres"]


def test_when_embeddings_fail_the_context_says_so_and_text_search_answers(clients, project):
    fact = remember(clients, project.project_id, "ana", "Ana's sister Rosa lives in Lisbon")
    with swapped(clients, llm=RecordingLLM(embed_fail=LLMUnavailable("down"))):
        context = recall.build_context(clients, project.project_id, "ana", query="sister Rosa", max_tokens=500)
        found = recall.search(clients, project.project_id, "ana", "sister Rosa")
    assert [m.id for m in context.memories] == [fact] and context.degraded == ["embeddings"]
    assert [m.id for m in found] == [fact]
