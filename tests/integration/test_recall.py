"""Recall on the real engines: hybrid search by meaning and by words, the context's parts and budget, scope,
and what is left out when an engine or the embeddings fail."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
from redis.connection import Connection

from reverie.cache import narratives as hot
from reverie.cache import pending as pending_list
from reverie.cache import recall_reads, users, working_memory
from reverie.chat import recall
from reverie.domain.fields import utcnow
from reverie.domain.memory import Turn
from reverie.domain.tiers import Tier
from reverie.jobs.message import make_job
from reverie.llm import LLMUnavailable, estimate_tokens
from reverie.platform import after_response
from reverie.store import memories as store
from reverie.store import memory_search
from tests.support.clients import swapped
from tests.support.llm import SpyLLM
from tests.support.memories import remember
from tests.support.narratives import queued_narratives

pytestmark = pytest.mark.integration


def nearest_to(clients, project_id: str, user_id: str, query: str) -> list[memory_search.Ranked]:
    """The vector half of the chat's search: its candidates nearest to the query, of the clients' model only."""
    return memory_search.nearest(clients.db, project_id, user_id, clients.llm.embed([query]).vectors[0],
                                 k=recall.CANDIDATES, tiers=recall.SEARCH_TIERS,
                                 embedding_model=clients.llm.embedding_model)


def test_search_blends_meaning_and_words(clients, project):
    p = project.project_id
    by_words = remember(clients, p, "ana", "Ana's sister Rosa lives in Lisbon", embed=False)
    by_both = remember(clients, p, "ana", "Rosa, Ana's sister, moved to Lisbon last spring")
    unrelated = remember(clients, p, "ana", "Ana is learning the cello")
    query = "Where does my sister Rosa live?"
    found = recall.search(clients, p, "ana", query, limit=5)
    assert [m.id for m in found] == [by_words, by_both, unrelated]
    assert found == sorted(found, key=lambda m: -m.score)
    # Give the vector list all the weight and the memory it holds alone comes first.
    with swapped(clients, search_vector_weight=1.0):
        assert recall.search(clients, p, "ana", query, limit=5)[0].id == by_both


def test_the_vector_half_returns_exactly_the_users_own_nearest_rows(clients, project):
    p = project.project_id
    target = remember(clients, p, "ana", "Ana adopted a grey cat named Miso")
    own = {target}
    for i in range(30):
        own.add(remember(clients, p, "ana", f"Ana's meeting number {i} was about quarterly budgets"))
        remember(clients, p, f"other-{i}", "Ana adopted a grey cat named Miso")  # same text, other users
    hits = nearest_to(clients, p, "ana", "adopted cat Miso")
    assert hits[0].id == target
    assert {h.id for h in hits} == own and len(hits) == 31


def test_a_search_as_of_a_past_moment_finds_what_was_current_then(clients, project):
    p = project.project_id
    old = remember(clients, p, "ana", "Ana lives in Porto")
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        cur.execute("SELECT now()")
        before = cur.fetchone()[0]
    new = remember(clients, p, "ana", "Ana lives in Berlin")
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        store.supersede(cur, p, "ana", old, new, job_id=None)
    then = recall.search(clients, p, "ana", "where does Ana live", as_of=before)
    assert [m.id for m in then] == [old]
    assert [m.id for m in recall.search(clients, p, "ana", "where does Ana live")] == [new]


def test_a_search_keeps_to_its_tiers_and_metadata_filters(clients, project):
    p = project.project_id
    vector = clients.llm.embed(["Ana plays the cello on Sundays"]).vectors[0]
    ids = {}
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        for tier, room in ((Tier.SEMANTIC, "home"), (Tier.EPISODIC, "home"), (Tier.SEMANTIC, "school")):
            ids[tier, room] = store.insert(cur, p, "ana", store.NewMemory(
                tier=tier, text=f"Ana plays the cello on Sundays ({tier.value}, {room})", embedding=vector,
                metadata={"room": room}))
    by_tier = recall.search(clients, p, "ana", "cello Sundays", tiers=[Tier.EPISODIC])
    assert [m.id for m in by_tier] == [ids[Tier.EPISODIC, "home"]]
    by_filter = recall.search(clients, p, "ana", "cello Sundays", filters={"room": "school"})
    assert [m.id for m in by_filter] == [ids[Tier.SEMANTIC, "school"]]
    both = recall.search(clients, p, "ana", "cello Sundays", tiers=[Tier.SEMANTIC], filters={"room": "home"})
    assert [m.id for m in both] == [ids[Tier.SEMANTIC, "home"]]


def test_rank_with_a_held_embedding_searches_by_either_half_or_both(clients, project):
    p = project.project_id
    by_words = remember(clients, p, "ana", "Ana's sister Rosa lives in Lisbon", embed=False)
    by_both = remember(clients, p, "ana", "Rosa, Ana's sister, moved to Lisbon last spring")
    query = "Where does my sister Rosa live?"
    embedding = clients.llm.embed([query]).vectors[0]
    hybrid = recall.rank(clients.db, p, "ana", query=query, embedding=embedding, limit=5)
    text_only = recall.rank(clients.db, p, "ana", query=query, embedding=None, limit=5)
    vector_only = recall.rank(clients.db, p, "ana", query="", embedding=embedding, limit=5)
    assert {m.id for m in text_only} == {by_words, by_both}
    assert [m.id for m in vector_only] == [by_both]
    assert [m.id for m in hybrid] == [by_both, by_words]
    # By the vector list alone, the one memory it holds scores 1; by words alone, the order of the words.
    vector_weighed = recall.rank(clients.db, p, "ana", query=query, embedding=embedding, limit=5, vector_weight=1.0)
    assert vector_weighed[0].id == by_both and vector_weighed[0].score == pytest.approx(1.0)
    text_weighed = recall.rank(clients.db, p, "ana", query=query, embedding=embedding, limit=5, vector_weight=0.0)
    assert [m.id for m in text_weighed] == [m.id for m in text_only]


def test_a_rare_word_of_the_question_outweighs_a_common_one(clients, project):
    # ts_rank_cd scored each of these one matching word alike; BM25 weighs "kayak" (one memory) far above
    # "Ines" (all the others).
    p = project.project_id
    for day in range(8):
        remember(clients, p, "mel", f"Ines talked about the weather on day {day}", embed=False)
    rare = remember(clients, p, "mel", "She is pricing a second-hand kayak", embed=False)
    found = memory_search.matching(clients.db, p, "mel", "What did Ines say about the kayak?", k=10)
    assert found[0].id == rare and len(found) == 9
    assert found[0].score > 2 * found[1].score
    assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)


def test_a_hit_lifts_the_turns_stored_beside_it_in_its_session(clients, project):
    p = project.project_id
    before = remember(clients, p, "mel", "Ines: guess where I went yesterday", Tier.EPISODIC, embed=False,
                      session_id="s1")
    hit = remember(clients, p, "mel", "Ines: the ceramics course open evening", Tier.EPISODIC, embed=False,
                   session_id="s1")
    after = remember(clients, p, "mel", "Tom: that sounds fun, what did you make?", Tier.EPISODIC,
                     embed=False, session_id="s1")
    remember(clients, p, "mel", "Tom: fixing the bike today", Tier.EPISODIC, embed=False, session_id="s1")
    remember(clients, p, "mel", "Ines: hello again", Tier.EPISODIC, embed=False, session_id="s2")
    remember(clients, p, "mel", "Ines: a fact with no session", Tier.SEMANTIC, embed=False)

    found = recall.search(clients, p, "mel", "ceramics course", limit=10)
    assert [m.id for m in found[:1]] == [hit]
    # The neighbours match no word and carry no vector: they are there for being beside the hit, at half its score.
    assert {m.id for m in found} == {hit, before, after}
    assert all(m.score == pytest.approx(found[0].score / 2) for m in found[1:])

    lonely = recall.search(clients, p, "mel", "ceramics course", limit=10, tiers=[Tier.SEMANTIC])
    assert lonely == []
    with swapped(clients, search_neighbour_weight=0.0):
        assert [m.id for m in recall.search(clients, p, "mel", "ceramics course", limit=10)] == [hit]


def test_the_vector_half_ignores_vectors_of_another_model(clients, project):
    p = project.project_id
    ours = remember(clients, p, "ana", "Ana adopted a grey cat named Miso")
    remember(clients, p, "ana", "Ana adopted a grey cat named Miso too", embedding_model="another-model-v2")
    assert [h.id for h in nearest_to(clients, p, "ana", "adopted cat Miso")] == [ours]


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
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        store.supersede(cur, p, "ana", old, new, job_id=None)
    assert [m.id for m in recall.search(clients, p, "ana", "where does Ana live")] == [new]


def test_the_context_has_each_part_and_fits_its_budget(clients, project):
    p = project.project_id
    rule = remember(clients, p, "ana", "Answer in short bullet points", Tier.PROCEDURAL)
    fact = remember(clients, p, "ana", "Ana's sister Rosa lives in Lisbon")
    for i in range(40):
        remember(clients, p, "ana", f"Ana visited Lisbon museum number {i} with her sister and loved the tiles")
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
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


def test_a_stale_narrative_is_used_and_its_regeneration_queued(clients, project):
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO narratives (project_id, user_id, version, text, generated_at)"
                    " VALUES (%s, 'ana', 1, 'old story', %s)", (project.project_id, utcnow() - timedelta(days=30)))
    assert recall.build_context(clients, project.project_id, "ana", max_tokens=500).narrative == "old story"
    assert after_response.drain(10)
    assert [(j.user_id, j.reason) for j in queued_narratives(clients, project.project_id)] == [("ana", "stale")]


def test_with_postgres_down_the_context_keeps_the_recent_turns_and_says_what_is_missing(clients, project):
    p = project.project_id
    pipe = clients.valkey.pipeline(transaction=False)
    working_memory.append_turns(pipe, p, "ana", "s1", [Turn(role="user", content="hello")], 20, 600)
    pipe.execute()
    with swapped(clients, postgres_down=True):
        context = recall.build_context(clients, p, "ana", query="hello", session_id="s1", max_tokens=500)
    assert [t.content for t in context.recent_turns] == ["hello"]
    assert context.memories == [] and context.rules == [] and context.degraded == ["postgres"]


def test_with_valkey_down_the_context_has_the_narrative_from_postgres_and_says_what_is_missing(clients, project):
    p = project.project_id
    rule = remember(clients, p, "ana", "Answer in short bullet points", Tier.PROCEDURAL)
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO narratives (project_id, user_id, version, text) VALUES (%s, 'ana', 1, 'Ana teaches')",
                    (p,))
    with swapped(clients, valkey_down=True):
        context = recall.build_context(clients, p, "ana", query="hello", session_id="s1", max_tokens=500)
    assert context.narrative == "Ana teaches" and [m.id for m in context.rules] == [rule]
    assert context.recent_turns == [] and context.pending == [] and context.degraded == ["valkey"]


def test_the_users_keys_are_read_in_one_round_trip(clients, project, monkeypatch):
    """The narrative's hot copy, the session's turns and the turns not learned yet: three keys of one slot, one
    message to Valkey, and the same as each read alone."""
    p = project.project_id
    pipe = clients.valkey.pipeline(transaction=False)
    working_memory.append_turns(pipe, p, "ana", "s1", [Turn(role="user", content="I moved to Porto")], 20, 600)
    pipe.execute()
    writes = users.UserWrites(clients.valkey, p, "ana", 0.0)
    pending_list.remember(writes, make_job(project_id=p, user_id="ana", session_id="s1",
                                           turns=[Turn(role="user", content="I moved to Porto")]), 50, 600)
    hot.write(writes, p, "ana", {"text": "Ana lives in Porto", "version": 3, "generated_at": utcnow(),
                                 "citations": []}, fill=False)
    writes.execute()

    sent = []
    real = Connection.send_packed_command
    monkeypatch.setattr(Connection, "send_packed_command", lambda self, *a, **k: (sent.append(1), real(self, *a, **k)))
    read = recall_reads.read(clients.valkey, p, "ana", session_id="s1", recent_limit=10, with_pending=True)
    monkeypatch.undo()
    assert len(sent) == 1
    assert read.narrative == hot.read(clients.valkey, p, "ana") and read.narrative.narrative["version"] == 3
    assert read.recent_turns == working_memory.recent_turns(clients.valkey, p, "ana", "s1", 10)
    assert read.pending == pending_list.read(clients.valkey, p, "ana") and len(read.pending) == 1
    assert recall_reads.read(clients.valkey, p, "ana", session_id=None, recent_limit=10,
                             with_pending=False) == recall_reads.UserReads(narrative=read.narrative,
                                                                           recent_turns=None, pending=None)


def test_when_embeddings_fail_the_context_says_so_and_text_search_answers(clients, project):
    fact = remember(clients, project.project_id, "ana", "Ana's sister Rosa lives in Lisbon")
    with swapped(clients, llm=SpyLLM(fail={"embed": LLMUnavailable("down")})):
        context = recall.build_context(clients, project.project_id, "ana", query="sister Rosa", max_tokens=500)
        found = recall.search(clients, project.project_id, "ana", "sister Rosa")
    assert [m.id for m in context.memories] == [fact] and context.degraded == ["embeddings"]
    assert [m.id for m in found] == [fact]


def test_a_large_user_is_searched_through_the_vector_index_and_finds_what_the_exact_scan_finds(
        clients, project, monkeypatch):
    p = project.project_id
    texts = [("Ana adopted a grey cat named Miso", Tier.SEMANTIC), ("Ana took Miso the cat to the vet", Tier.EPISODIC),
             ("Ana's sister Rosa lives in Lisbon", Tier.SEMANTIC), ("Ana planned a trip to Lisbon", Tier.EPISODIC),
             ("Ana prefers cats to dogs", Tier.PROCEDURAL), ("Ana is learning the cello", Tier.SEMANTIC)]
    for text, tier in texts:
        remember(clients, p, "ana", text, tier)
    remember(clients, p, "bo", "Bo adopted a grey cat named Miso too", Tier.SEMANTIC)
    query = clients.llm.embed(["grey cat Miso at the vet"]).vectors[0]
    exact = memory_search.nearest(clients.db, p, "ana", query, k=4, tiers=list(Tier))

    monkeypatch.setattr(memory_search, "LARGE_SCOPE", 3)  # ana's six memories make her a large user
    approximate = memory_search.nearest(clients.db, p, "ana", query, k=4, tiers=list(Tier))
    plan = explain_nearest(clients, p, "ana", query)
    # The index holds current memories only: a search of the past stays exact.
    past = memory_search.nearest(clients.db, p, "ana", query, k=4, tiers=list(Tier), as_of=utcnow())

    assert [h.id for h in approximate] == [h.id for h in exact] == [h.id for h in past]
    assert [h.distance for h in approximate] == sorted(h.distance for h in approximate)
    assert "memories_current_half_vectors_hnsw" in plan and "One-Time Filter" in plan


def explain_nearest(clients, project_id: str, user_id: str, query: list[float]) -> str:
    """The plan of memory_search.nearest's statement, with sequential scans and sorts priced out (as a large table
    would price them): which index the approximate branch reads."""
    statements = []

    class Recorder:
        def __init__(self, cur):
            self.cur = cur

        def execute(self, sql, params=None):
            settings, statement = sql.split(";", 1)
            priced_out = "; SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off; EXPLAIN "
            self.cur.execute(settings + priced_out + statement, params)
            statements.extend(row[0] for row in self.cur.fetchall())

        def fetchall(self):
            return []

    real_read = clients.db.read

    @contextmanager
    def read(scope, cursor_factory=None):
        with clients.db.transaction(scope) as conn, conn.cursor() as cur:
            yield Recorder(cur)

    clients.db.read = read
    try:
        memory_search.nearest(clients.db, project_id, user_id, query, k=4, tiers=list(Tier))
    finally:
        clients.db.read = real_read
    return "\n".join(statements)


@pytest.mark.parametrize("query", [
    "O'Brien's \\\\server\\share path", "a & b | !c <-> (d) *:", "'quoted' \"double\" \\' ''", "日本語 ünïcödé straße",
    "e'x' E'\\\\x' $$ $1 %s %(x)s", "C:\\Users\\ana\\notes.txt and 127.0.0.1:8080 foo@bar.com",
])
def test_any_words_a_user_types_are_searched_without_an_error(clients, project, query):
    p = project.project_id
    kept = remember(clients, p, "ana", f"Ana wrote: {query}")
    found = recall.search(clients, p, "ana", query, limit=5)
    assert [m.id for m in found] == [kept]
