"""Moving a project to another embedding model: its memories embedded again a batch at a time, resumable, never
mixing two models' vectors in a search, and the CLI that drives it through the admin function."""

from __future__ import annotations

import pytest

from reverie.chat import recall
from reverie.domain.tiers import Tier
from reverie.llm import LLMUnavailable
from reverie.ops import admin, reembed
from reverie.store import embeddings, memory_search
from reverie.store.projects import create_project
from tests.support.clients import swapped
from tests.support.llm import SpyLLM
from tests.support.memories import remember

pytestmark = pytest.mark.integration

OLD = "old-embedder-v0"


def vectors_of(clients, project_id: str) -> dict[str, tuple[str | None, str | None]]:
    """Each memory's text -> (its model, its vector as text)."""
    with clients.db.read(project_id, cursor_factory=None) as cur:
        cur.execute("SELECT text, embedding_model, embedding::text FROM memories WHERE project_id = %s", (project_id,))
        return {row[0]: (row[1], row[2]) for row in cur.fetchall()}


def old_memories(clients, project_id: str, n: int, user: str = "ana") -> list[str]:
    texts = [f"Ana's note number {i} about the garden" for i in range(n)]
    for text in texts:
        remember(clients, project_id, user, text, Tier.EPISODIC, embedding_model=OLD)
    return texts


def test_a_project_is_embedded_again_batch_by_batch_and_resumes_where_it_stopped(clients, project):
    p = project.project_id
    texts = old_memories(clients, p, 7)
    remember(clients, p, "ana", "A memory that was never embedded", embed=False)
    current = remember(clients, p, "ana", "Already of the current model")
    other = f"{p}-other"
    create_project(clients.db, other)
    old_memories(clients, other, 2)

    first = reembed.reembed(clients, p, batch=3, budget_s=0)  # one batch a call at least
    assert first.reembedded == 3 and first.remaining == 5 and first.next_after is not None
    answers = [first]
    while answers[-1].next_after is not None:
        answers.append(reembed.reembed(clients, p, after=answers[-1].next_after, batch=3, budget_s=0))
    assert sum(a.reembedded for a in answers) == 8 and answers[-1].remaining == 0

    model = clients.llm.embedding_model
    stored = vectors_of(clients, p)
    assert {m for m, _ in stored.values()} == {model}
    for text in [*texts, "A memory that was never embedded"]:
        expected = clients.llm.embed([text]).vectors[0]
        assert [float(x) for x in stored[text][1].strip("[]").split(",")] == pytest.approx(expected, abs=1e-5)
    assert current and {m for m, _ in vectors_of(clients, other).values()} == {OLD}  # another project: untouched
    # Started over, the walk finds nothing left to do and makes no model call.
    spy = SpyLLM()
    with swapped(clients, llm=spy):
        again = reembed.reembed(clients, p, batch=3)
    assert again.reembedded == 0 and again.remaining == 0 and spy.calls["embed"] == 0


def test_a_memory_edited_meanwhile_keeps_the_vector_of_its_new_words(clients, project):
    p = project.project_id
    old_memories(clients, p, 1)
    model = clients.llm.embedding_model
    [(_, memory_id, _, digest)] = embeddings.stale(clients.db, p, model, after=0, limit=5)
    # Its words changed after they were read (the hash no longer matches): the vector of the old words is not kept.
    assert embeddings.replace(clients.db, p, model, [(memory_id, "the-hash-of-other-words", [0.1] * 384)]) == 0
    assert embeddings.replace(clients.db, p, model, [(memory_id, digest, [0.1] * 384)]) == 1


def test_a_model_that_fails_stops_the_run_with_what_to_do_and_changes_nothing(clients, project):
    p = project.project_id
    old_memories(clients, p, 2)
    spy = SpyLLM(fail={"embed": LLMUnavailable("endpoint down")})
    with swapped(clients, llm=spy):
        answer = admin.handle(clients, {"action": "embeddings.reembed", "project_id": p})
    assert answer["error"]["code"] == "unavailable" and "run it again" in answer["error"]["message"]
    assert {m for m, _ in vectors_of(clients, p).values()} == {OLD}


def test_during_a_move_old_vectors_are_found_by_their_words_never_compared_by_cosine(clients, project):
    p = project.project_id
    old = remember(clients, p, "ana", "Ana's cat Miso sleeps on the piano", embedding_model=OLD)
    found = recall.search(clients, p, "ana", "Where does Miso sleep?")
    assert [m.id for m in found] == [old]
    query = clients.llm.embed(["Where does Miso sleep?"]).vectors[0]
    assert memory_search.nearest(clients.db, p, "ana", query, k=10, embedding_model=clients.llm.embedding_model) == []


def test_the_admin_action_checks_its_fields_and_answers_where_to_go_on(clients, project):
    p = project.project_id
    old_memories(clients, p, 3)
    answer = admin.handle(clients, {"action": "embeddings.reembed", "project_id": p, "batch": 2})
    assert answer["model"] == clients.llm.embedding_model and answer["remaining"] == 0
    assert answer["reembedded"] == 3 and answer["next_after"] is None
    refused = admin.handle(clients, {"action": "embeddings.reembed", "project_id": p, "batch": 0})
    assert refused["error"]["code"] == "validation_error" and "batch" in refused["error"]["message"]
    unknown = admin.handle(clients, {"action": "embeddings.reembed", "project_id": "no-such-project"})
    assert unknown["error"]["code"] == "not_found"
