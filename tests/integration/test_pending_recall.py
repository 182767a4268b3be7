"""Reading one's own writes: what the user said and the tiers have not learned yet is recalled in every session,
marked pending, and leaves once learned, so nothing is shown twice."""

from __future__ import annotations

import pytest

from reverie.cache import keys
from reverie.cache import pending as pending_list
from reverie.chat import recall
from reverie.domain.tiers import TIERS, Tier
from reverie.reflect.consumer import handle_batch
from tests.support.chat import drain_all_tiers, post_chat, published, user_keys_left
from tests.support.clients import Swapped, swapped
from tests.support.llm import SpyLLM
from tests.support.reflect import event

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _leave_the_queues_clean(clients, project, other_project):
    yield
    for p in (project.project_id, other_project.project_id):
        drain_all_tiers(clients, p)


def say(project_id: str, user_id: str, session_id: str, message: str) -> dict:
    status, answer = post_chat(project_id, {"user_id": user_id, "session_id": session_id, "message": message})
    assert status == 200, answer
    return answer


def context(api, user_id: str, **query) -> dict:
    status, body, _ = api("GET", "/v1/context", query={"user_id": user_id, **query})
    assert status == 200, body
    return body


def learn(clients, project_id: str, lambda_context, tiers=TIERS) -> None:
    """What the reflectors do with the project's published jobs (a window of one: learned as they come)."""
    for tier in TIERS:
        jobs = published(clients, project_id, tier)
        if tier in tiers and jobs:
            assert handle_batch(tier, event(*jobs), lambda_context, clients) == {"batchItemFailures": []}


def test_a_fact_said_in_one_session_is_in_the_context_of_another_at_once_marked_pending(clients, project, api):
    p = project.project_id
    said = say(p, "ana", "s1", "I moved to Berlin last month.")

    block = context(api, "ana", session_id="s2", query="Where do I live now?")

    assert [(t["job_id"], t["text"], t["learned"], t["session_id"]) for t in block["pending"]] == [
        (said["job_id"], "I moved to Berlin last month.", False, "s1")]
    assert block["memories"] == [] and block["recent_turns"] == []
    # Its own session has it among its recent turns already: not shown twice.
    assert context(api, "ana", session_id="s1")["pending"] == []


def test_the_reply_in_a_new_session_is_given_what_was_just_said(clients, project):
    p = project.project_id
    say(p, "ana", "s1", "I moved to Berlin last month.")
    spy = SpyLLM()
    with swapped(clients, llm=spy):
        answer = say(p, "ana", "s2", "Which city do I live in?")

    assert [t["text"] for t in answer["context"]["pending"]] == ["I moved to Berlin last month."]
    system = spy.replies[-1][0]["content"]
    assert "<pending>" in system and "I moved to Berlin last month." in system
    assert "Berlin" in answer["reply"]


def test_once_every_tier_has_learned_it_the_turn_is_a_memory_and_pending_no_more(clients, project, api,
                                                                                lambda_context):
    p = project.project_id
    said = say(p, "ana", "s1", "I moved to Berlin last month.")
    learn(clients, p, lambda_context)

    block = context(api, "ana", session_id="s2", query="Where do I live now?")

    assert block["pending"] == []
    assert [m["text"] for m in block["memories"] if m["tier"] == "semantic"] == ["User lives in Berlin"]
    # ...and the read took its entry off the user's list.
    assert [t.job_id for _, t in pending_list.read(clients.valkey, p, "ana")] == []
    with clients.db.read(p) as cur:
        cur.execute("SELECT source_job_id FROM memories WHERE project_id = %s AND user_id = 'ana' AND tier = 'semantic'"
                    " AND superseded_at IS NULL", (p,))
        assert [row["source_job_id"] for row in cur.fetchall()] == [said["job_id"]]


def test_a_turn_whose_memory_is_shown_already_is_not_shown_again_before_every_tier_has_learned_it(
    clients, project, lambda_context,
):
    p = project.project_id
    say(p, "ana", "s1", "I moved to Berlin last month.")
    learn(clients, p, lambda_context, tiers=[Tier.SEMANTIC])  # episodic and procedural have not learned it yet

    built = recall.build_context(clients, p, "ana", query="Where do I live?", session_id="s2", max_tokens=1500)

    assert [m.text for m in built.memories] == ["User lives in Berlin"]
    assert built.pending == []
    unrelated = recall.build_context(clients, p, "ana", query=None, session_id="s2", max_tokens=1500)
    assert [m.text for m in unrelated.memories] == ["User lives in Berlin"] and unrelated.pending == []


def test_pending_turns_are_ranked_by_the_words_they_share_with_the_query_then_newest(clients, project):
    p = project.project_id
    for message in ("I adopted a cat named Miso.", "My sister Rosa lives in Lisbon.", "I started learning the cello."):
        say(p, "ana", "s1", message)

    found = recall.build_context(clients, p, "ana", query="Where does my sister Rosa live?", session_id="s2",
                                 max_tokens=1500).pending
    newest_first = recall.build_context(clients, p, "ana", session_id="s2", max_tokens=1500).pending

    assert found[0].text == "My sister Rosa lives in Lisbon." and found[0].score >= 2
    assert [t.text for t in newest_first] == ["I started learning the cello.", "My sister Rosa lives in Lisbon.",
                                              "I adopted a cat named Miso."]


def test_the_list_keeps_the_newest_turns_within_its_cap_and_its_ttl(clients, project):
    p = project.project_id
    with swapped(clients, pending_max_turns=3, pending_ttl_s=600):
        for i in range(5):
            say(p, "ana", f"s{i}", f"I have a plant called Fern{i}.")
    kept = [t.text for _, t in pending_list.read(clients.valkey, p, "ana")]
    assert kept == ["I have a plant called Fern2.", "I have a plant called Fern3.", "I have a plant called Fern4."]
    assert 0 < clients.valkey.ttl(keys.pending_turns(p, "ana")) <= 600


def test_what_the_memory_api_is_given_to_learn_is_pending_too(clients, project, api):
    status, body, _ = api("POST", "/v1/memories", body={
        "user_id": "ana", "messages": [{"role": "user", "content": "I work at Acme now."},
                                       {"role": "assistant", "content": "Congratulations!"}]})
    assert status == 202, body

    block = context(api, "ana", query="Where do I work?")

    assert [(t["text"], t["job_id"]) for t in block["pending"]] == [("I work at Acme now.", body["job_id"])]


def test_a_search_of_the_present_lists_the_matching_pending_turns(clients, project, api):
    p = project.project_id
    say(p, "ana", "s1", "My sister Rosa lives in Lisbon.")
    say(p, "ana", "s1", "I started learning the cello.")

    status, found, _ = api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "sister Rosa"})
    assert status == 200 and [t["text"] for t in found["pending"]] == ["My sister Rosa lives in Lisbon."]
    status, past, _ = api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "sister Rosa",
                                                                 "as_of": "2020-01-01T00:00:00Z"})
    assert status == 200 and past["pending"] == []


def test_another_users_or_projects_pending_turns_are_never_recalled(clients, project, other_project, api):
    say(project.project_id, "bob", "s1", "I live in Oslo.")
    say(other_project.project_id, "ana", "s1", "I live in Oslo.")
    assert context(api, "ana", session_id="s2", query="Oslo")["pending"] == []


def test_the_users_export_holds_the_list(clients, project, api):
    said = say(project.project_id, "ana", "s1", "I moved to Berlin last month.")
    status, export, _ = api("GET", "/v1/users/ana/export")
    assert status == 200
    assert [(t["job_id"], t["text"]) for t in export["pending"]] == [(said["job_id"], "I moved to Berlin last month.")]


def test_a_forget_deletes_the_list(clients, project, api):
    p = project.project_id
    say(p, "ana", "s1", "I moved to Berlin last month.")
    status, _, _ = api("DELETE", "/v1/users/ana")
    assert status == 202
    assert user_keys_left(clients, p, "ana") == []
    assert context(api, "ana", session_id="s2")["pending"] == []


def test_without_valkey_the_context_says_so_and_without_postgres_pending_turns_are_all_kept(clients, project):
    p = project.project_id
    say(p, "ana", "s1", "I moved to Berlin last month.")

    down = Swapped(clients, valkey_down=True)
    try:
        built = recall.build_context(down, p, "ana", query="Berlin", session_id="s2", max_tokens=500)
    finally:
        down.close()
    assert built.pending == [] and "valkey" in built.degraded

    no_postgres = Swapped(clients, postgres_down=True)
    try:
        built = recall.build_context(no_postgres, p, "ana", query="Berlin", session_id="s2", max_tokens=500)
    finally:
        no_postgres.close()
    assert [t.text for t in built.pending] == ["I moved to Berlin last month."] and built.degraded == ["postgres"]
