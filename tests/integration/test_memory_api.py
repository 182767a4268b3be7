"""The memory API handler, invoked in process with API Gateway v2 events, over the real engines."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from reverie.cache import job_markers
from reverie.domain.memory import Turn
from reverie.llm.offline import register_skill, registered_skills, unregister_skill
from reverie.reflect import narrative
from reverie.store import memories
from tests.support.api import event
from tests.support.chat import drain_reflection_jobs, user_keys_left


def add(api, user, *texts, tier="semantic", metadata=None):
    status, body, _ = api("POST", "/v1/memories", body={
        "user_id": user, "messages": [{"role": "user", "content": t} for t in texts], "infer": False,
        "tier": tier, **({"metadata": metadata} if metadata else {}),
    })
    assert status == 201, body
    return body["memories"]


def assert_error(status, body, expected_status, code=None):
    assert status == expected_status, body
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


# ---------------------------------------------------------------- add, list, get, history, delete


def test_add_without_inference_stores_each_message_as_given_with_an_embedding(api, clients, project):
    stored = add(api, "ana", "Ana lives in Porto", "Ana answers in short bullet points", tier="procedural",
                 metadata={"source": "import"})
    assert [m["text"] for m in stored] == ["Ana lives in Porto", "Ana answers in short bullet points"]
    assert {m["tier"] for m in stored} == {"procedural"} and all(m["user_id"] == "ana" for m in stored)
    assert all(m["metadata"] == {"source": "import"} for m in stored)
    with clients.db.cursor(project.project_id) as cur:
        cur.execute("SELECT count(*) AS n FROM memories WHERE project_id = %s AND embedding IS NOT NULL",
                    (project.project_id,))
        assert cur.fetchone()["n"] == 2
        cur.execute("SELECT purpose FROM llm_usage WHERE project_id = %s AND user_id = 'ana'", (project.project_id,))
        assert [r["purpose"] for r in cur.fetchall()] == ["embed"]


def test_adding_the_same_fact_again_answers_the_memory_already_stored(api):
    first = add(api, "ana", "Ana lives in Porto")
    again = add(api, "ana", "ana lives in porto!")
    assert again[0]["id"] == first[0]["id"]
    status, page, _ = api("GET", "/v1/memories", query={"user_id": "ana"})
    assert status == 200 and len(page["memories"]) == 1


def test_add_with_inference_queues_one_api_job_and_answers_202(api, clients, project):
    status, body, _ = api("POST", "/v1/memories", body={
        "user_id": "ana", "messages": [{"role": "user", "content": "I moved to Berlin"}]})
    assert status == 202 and set(body) == {"job_id", "job_ids"} and body["job_ids"] == [body["job_id"]]
    marker = job_markers.known(clients.valkey, project.project_id, body["job_id"])
    assert marker == {**marker, "user_id": "ana", "source": "api"}
    queued = drain_reflection_jobs(clients, project.project_id)
    assert sorted(j["job_id"] for j in queued) == [body["job_id"]] * 3  # one per tier queue
    assert queued[0]["source"] == "api" and queued[0]["turns"][0]["content"] == "I moved to Berlin"
    # Nothing is stored synchronously: the tiers learn from the job.
    assert api("GET", "/v1/memories", query={"user_id": "ana"})[1]["memories"] == []


def test_list_pages_through_every_memory_with_the_cursor(api):
    texts = [f"fact number {i} about the garden" for i in range(7)]
    for text in texts:
        add(api, "ana", text)
    seen, cursor = [], None
    while True:
        status, page, _ = api("GET", "/v1/memories", query={"user_id": "ana", "limit": 3, "cursor": cursor})
        assert status == 200 and len(page["memories"]) <= 3
        seen += [m["text"] for m in page["memories"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(texts))  # newest first, each exactly once


def test_list_filters_by_tier(api):
    add(api, "ana", "likes tea", tier="semantic")
    add(api, "ana", "always answer in French", tier="procedural")
    status, page, _ = api("GET", "/v1/memories", query={"user_id": "ana", "tier": "procedural"})
    assert status == 200 and [m["text"] for m in page["memories"]] == ["always answer in French"]


@pytest.mark.parametrize("query", [
    {"user_id": "ana", "limit": 101}, {"user_id": "ana", "limit": 0}, {"user_id": "ana", "limit": "ten"},
    {"user_id": "ana", "cursor": "not-a-cursor"}, {"user_id": "ana", "tier": "dreams"}, {"user_id": "bad id"},
    {}, {"user_id": "ana", "project": "someone-else"},
])
def test_list_refuses_bad_query_parameters_with_400(api, query):
    assert_error(*api("GET", "/v1/memories", query=query)[:2], 400, "validation_error")


def test_get_and_history_show_a_memory_and_its_changes(api, clients, project):
    [memory] = add(api, "ana", "Ana lives in Porto")
    status, got, _ = api("GET", f"/v1/memories/{memory['id']}")
    assert status == 200 and got["text"] == "Ana lives in Porto" and got["superseded_at"] is None
    status, history, _ = api("GET", f"/v1/memories/{memory['id']}/history")
    assert status == 200 and [e["event"] for e in history["events"]] == ["ADD"]


def test_delete_answers_204_and_the_history_keeps_the_delete(api):
    [memory] = add(api, "ana", "Ana lives in Porto")
    status, body, _ = api("DELETE", f"/v1/memories/{memory['id']}")
    assert status == 204 and body is None
    assert_error(*api("GET", f"/v1/memories/{memory['id']}")[:2], 404, "not_found")
    status, history, _ = api("GET", f"/v1/memories/{memory['id']}/history")
    assert status == 200 and [e["event"] for e in history["events"]] == ["ADD", "DELETE"]
    assert_error(*api("DELETE", f"/v1/memories/{memory['id']}")[:2], 404, "not_found")


def test_a_deleted_memorys_text_is_gone_from_its_history_the_narratives_and_the_export(api, clients, project):
    from reverie.jobs.message import NarrativeJob

    p = project.project_id
    [secret] = add(api, "ana", "4417 is Ana's door code")
    with clients.db.transaction(p) as conn, conn.cursor() as cur:  # refined, then replaced: every event quotes it
        assert memories.update_text(cur, p, "ana", secret["id"], "4417 is Ana's front door code",
                                    embedding=None, embedding_model=None, job_id="j-refine")
    assert narrative.generate(clients, NarrativeJob(project_id=p, user_id="ana"))["version"] == 1  # cites it
    [kept] = add(api, "ana", "Ana's door code was changed last spring")
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        assert memories.supersede(cur, p, "ana", secret["id"], kept["id"], job_id="j-replace")
    before = api("GET", f"/v1/memories/{secret['id']}/history")[1]["events"]
    assert "4417" in json.dumps(before) and "4417" in api("GET", "/v1/users/ana/narrative")[1]["narrative"]

    assert api("DELETE", f"/v1/memories/{secret['id']}")[0] == 204

    status, history, _ = api("GET", f"/v1/memories/{secret['id']}/history")
    assert status == 200
    # Every event stays, with its kind, job and time; none keeps any text.
    assert [(e["event"], e["job_id"]) for e in history["events"]] == [
        ("ADD", None), ("UPDATE", "j-refine"), ("SUPERSEDE", "j-replace"), ("DELETE", None)]
    assert [e["created_at"] for e in history["events"][:3]] == [e["created_at"] for e in before]
    assert all(e["old_text"] is None and e["new_text"] is None for e in history["events"])
    status, export, _ = api("GET", "/v1/users/ana/export")
    assert status == 200 and export["next_cursor"] is None
    assert "4417" not in json.dumps(export)
    assert export["narratives"] == []  # the narrative written from it went with it
    # What is not the deleted memory keeps its text.
    assert [m["text"] for m in export["memories"]] == ["Ana's door code was changed last spring"]
    assert api("GET", f"/v1/memories/{kept['id']}/history")[1]["events"][0]["new_text"] == kept["text"]


@pytest.mark.parametrize("memory_id", [str(uuid.uuid4()), "not-a-uuid", "1"])
@pytest.mark.parametrize("method,suffix", [("GET", ""), ("GET", "/history"), ("DELETE", "")])
def test_unknown_or_malformed_memory_ids_are_404(api, memory_id, method, suffix):
    assert_error(*api(method, f"/v1/memories/{memory_id}{suffix}")[:2], 404, "not_found")


# ---------------------------------------------------------------- search, ask, deep query, context


def test_search_finds_by_meaning_and_filters_by_tier_and_metadata(api):
    add(api, "ana", "Ana lives in Porto", metadata={"topic": "home"})
    add(api, "ana", "Ana's sister is called Marta", metadata={"topic": "family"})
    add(api, "ana", "Answer Ana in Portuguese", tier="procedural")
    status, found, _ = api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "where does Ana live?"})
    assert status == 200
    assert found["results"][0]["text"] == "Ana lives in Porto"
    hit = found["results"][0]
    assert set(hit) == {"id", "tier", "text", "score", "valid_from", "valid_to", "created_at", "metadata"}

    only_rules = api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "Ana", "tiers": ["procedural"]})
    assert [r["text"] for r in only_rules[1]["results"]] == ["Answer Ana in Portuguese"]
    family = api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "Ana", "filters": {"topic": "family"}})
    assert [r["text"] for r in family[1]["results"]] == ["Ana's sister is called Marta"]


def test_search_as_of_sees_a_fact_as_it_was_before_it_was_superseded(api, clients, project):
    [porto] = add(api, "ana", "Ana lives in Porto")
    before = datetime.now(UTC)
    [berlin] = add(api, "ana", "Ana lives in Berlin")
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        assert memories.supersede(cur, project.project_id, "ana", porto["id"], berlin["id"], job_id=None)
    query = {"user_id": "ana", "query": "where does Ana live"}
    now = api("POST", "/v1/memories/search", body=query)[1]["results"]
    assert [r["text"] for r in now] == ["Ana lives in Berlin"]
    then = api("POST", "/v1/memories/search", body={**query, "as_of": before.isoformat()})[1]["results"]
    assert [r["text"] for r in then] == ["Ana lives in Porto"]


def test_ask_answers_from_retrieved_memories_and_cites_them(api):
    [porto] = add(api, "ana", "Ana lives in Porto")
    add(api, "ana", "Ana plays the cello")
    status, body, _ = api("POST", "/v1/memories/ask", body={"user_id": "ana", "question": "Where does Ana live?"})
    assert status == 200
    assert "Porto" in body["answer"] and body["citations"][0] == porto["id"]


def test_ask_with_nothing_remembered_says_so_and_cites_nothing(api):
    status, body, _ = api("POST", "/v1/memories/ask", body={"user_id": "nobody", "question": "Where do I live?"})
    assert status == 200 and body["citations"] == [] and "don't" in body["answer"]


@pytest.fixture
def inventive_answer_skill():
    """A model that cites one real id and one it made up."""
    from reverie.chat import answers

    assert "answer" in registered_skills()
    real = answers._offline_answer

    @register_skill("answer")
    def invent(messages, schema):
        shown = answers._shown(messages)[0]
        return {"answer": "made up", "citations": [str(uuid.uuid4()), shown[0]["id"], "not even an id"]}

    yield
    unregister_skill("answer")
    register_skill("answer")(real)


def test_ask_cites_only_memories_that_were_actually_retrieved(api, inventive_answer_skill):
    [porto] = add(api, "ana", "Ana lives in Porto")
    body = api("POST", "/v1/memories/ask", body={"user_id": "ana", "question": "Where does Ana live?"})[1]
    assert body["citations"] == [porto["id"]]


def test_deep_query_reasons_over_the_timeline_and_replaced_facts(api, clients, project):
    [porto] = add(api, "ana", "Ana lives in Porto")
    [berlin] = add(api, "ana", "Ana lives in Berlin")
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        memories.supersede(cur, project.project_id, "ana", porto["id"], berlin["id"], job_id=None)
    [trip] = add(api, "ana", "2026-11-20: Ana moved house to Berlin and found it stressful", tier="episodic")
    add(api, "ana", "Keep answers about Ana's moves short", tier="procedural")
    status, body, _ = api("POST", "/v1/memories/deep-query",
                          body={"user_id": "ana", "query": "Where has Ana lived and how was the move?"})
    assert status == 200
    assert {porto["id"], berlin["id"], trip["id"]} <= set(body["citations"])
    assert {"semantic", "episodic"} <= set(body["tiers_used"])
    assert "Berlin" in body["answer"] and "Porto" in body["answer"]


def test_context_gathers_rules_memories_and_recent_turns_within_max_tokens(api, clients, project):
    from reverie.cache import working_memory

    add(api, "ana", "Always answer Ana in Portuguese", tier="procedural")
    add(api, "ana", "Ana lives in Porto", "Ana's sister is Marta")
    turns = [Turn(role="user", content="I am planning a trip"), Turn(role="assistant", content="Where to?")]
    working_memory.append_turns(clients.valkey, project.project_id, "ana", "s1", turns, 20, 600)
    status, ctx, _ = api("GET", "/v1/context", query={"user_id": "ana", "session_id": "s1", "query": "where do I live"})
    assert status == 200
    assert [r["text"] for r in ctx["rules"]] == ["Always answer Ana in Portuguese"]
    assert ctx["memories"][0]["text"] == "Ana lives in Porto"
    assert [t["content"] for t in ctx["recent_turns"]] == ["I am planning a trip", "Where to?"]
    assert 0 < ctx["tokens"] <= 1500

    status, small, _ = api("GET", "/v1/context", query={"user_id": "ana", "session_id": "s1", "max_tokens": 50})
    assert status == 200 and small["tokens"] <= 50
    assert_error(*api("GET", "/v1/context", query={"user_id": "ana", "max_tokens": 10})[:2], 400)


# ---------------------------------------------------------------- users


def _queued_narratives(clients, project_id):
    url, found = clients.settings.narrative_queue_url, []
    while True:
        got = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return found
        for message in got:
            job = narrative.parse(message["Body"])
            if job.project_id == project_id:
                found.append(job)
                clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:  # another test's job: back on the queue at once
                clients.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                                      VisibilityTimeout=0)


def test_a_missing_narrative_answers_202_at_once_and_queues_one_job(api, clients, project):
    add(api, "ana", "Ana lives in Porto")
    first = api("GET", "/v1/users/ana/narrative")
    second = api("GET", "/v1/users/ana/narrative")
    assert first[0] == second[0] == 202
    assert first[1]["status"] == "generating" and first[1]["job_id"]
    queued = _queued_narratives(clients, project.project_id)
    assert [(j.user_id, j.reason, j.job_id) for j in queued] == [("ana", "missing", first[1]["job_id"])]

    narrative.generate(clients, queued[0])
    status, story, _ = api("GET", "/v1/users/ana/narrative")
    assert status == 200 and story["version"] == 1 and story["narrative"] and story["citations"]


def test_regenerate_queues_a_requested_narrative_job(api, clients, project):
    status, body, _ = api("POST", "/v1/users/ana/narrative/regenerate")
    assert status == 202
    assert [(j.job_id, j.reason) for j in _queued_narratives(clients, project.project_id)] == [
        (body["job_id"], "requested")]


def test_export_holds_everything_stored_for_the_user(api, clients, project):
    from reverie.cache import working_memory

    [porto] = add(api, "ana", "Ana lives in Porto")
    [berlin] = add(api, "ana", "Ana lives in Berlin")
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        memories.supersede(cur, project.project_id, "ana", porto["id"], berlin["id"], job_id=None)
    add(api, "bob", "Bob likes jazz")
    working_memory.append_turns(clients.valkey, project.project_id, "ana", "s:1",
                                [Turn(role="user", content="hello")], 20, 600)
    status, export, _ = api("GET", "/v1/users/ana/export")
    assert status == 200 and export["user_id"] == "ana"
    assert {m["text"] for m in export["memories"]} == {"Ana lives in Porto", "Ana lives in Berlin"}
    assert {e["event"] for e in export["events"]} == {"ADD", "SUPERSEDE"}
    assert [u["purpose"] for u in export["usage"]] == ["embed", "embed"]
    assert export["working_memory"] == [{"session_id": "s:1", "turns": [export["working_memory"][0]["turns"][0]]}]
    assert export["working_memory"][0]["turns"][0]["content"] == "hello"
    assert export["next_cursor"] is None


def test_forget_removes_the_user_everywhere_and_leaves_others_alone(api, clients, project):
    from reverie.cache import working_memory

    add(api, "ana", "Ana lives in Porto")
    add(api, "bob", "Bob likes jazz")
    working_memory.append_turns(clients.valkey, project.project_id, "ana", "s1",
                                [Turn(role="user", content="hello")], 20, 600)
    queued = api("POST", "/v1/memories", body={"user_id": "ana", "messages": [{"content": "I like tea"}]})[1]
    api("GET", "/v1/users/ana/narrative")  # leaves the "pending" guard key

    status, body, _ = api("DELETE", "/v1/users/ana")
    assert status == 202 and body["job_id"]

    assert job_markers.known(clients.valkey, project.project_id, queued["job_id"]) is None
    assert user_keys_left(clients, project.project_id, "ana") == []
    with clients.db.cursor(project.project_id) as cur:
        for table in ("memories", "memory_events", "narratives", "llm_usage", "processed_jobs"):
            cur.execute(f"SELECT count(*) AS n FROM {table} WHERE project_id = %s AND user_id = 'ana'",
                        (project.project_id,))
            assert cur.fetchone()["n"] == 0, table
        cur.execute("SELECT count(*) AS n FROM user_tombstones WHERE project_id = %s AND user_id = 'ana'",
                    (project.project_id,))
        assert cur.fetchone()["n"] == 1
    export = api("GET", "/v1/users/ana/export")[1]
    assert [export[k] for k in ("memories", "events", "narratives", "jobs", "usage", "working_memory")] == [[]] * 6
    assert [m["text"] for m in api("GET", "/v1/memories", query={"user_id": "bob"})[1]["memories"]] == [
        "Bob likes jazz"]


def test_forget_can_be_repeated(api):
    add(api, "ana", "Ana lives in Porto")
    assert api("DELETE", "/v1/users/ana")[0] == 202
    assert api("DELETE", "/v1/users/ana")[0] == 202


@pytest.mark.parametrize("path", ["/v1/users/-ana/export", "/v1/users/a%20b/narrative", "/v1/users/" + "a" * 200])
def test_user_ids_in_the_path_are_validated(api, path):
    method = "DELETE" if path.count("/") == 3 else "GET"
    assert_error(*api(method, path)[:2], 400, "validation_error")


# ---------------------------------------------------------------- scope


def test_a_key_of_one_project_can_never_reach_another_projects_memories(api, other_api, clients, project,
                                                                      other_project):
    [theirs] = add(other_api, "ana", "Ana lives in Porto")
    for method, suffix in (("GET", ""), ("GET", "/history"), ("DELETE", "")):
        assert_error(*api(method, f"/v1/memories/{theirs['id']}{suffix}")[:2], 404, "not_found")
    assert api("GET", "/v1/memories", query={"user_id": "ana"})[1]["memories"] == []
    assert api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "Porto"})[1]["results"] == []
    assert api("POST", "/v1/memories/ask", body={"user_id": "ana", "question": "Porto?"})[1]["citations"] == []
    assert api("GET", "/v1/users/ana/export")[1]["memories"] == []
    assert api("GET", "/v1/context", query={"user_id": "ana"})[1]["memories"] == []
    assert api("DELETE", "/v1/users/ana")[0] == 202

    # All of it is still there for its own project.
    assert other_api("GET", f"/v1/memories/{theirs['id']}")[0] == 200
    assert [m["id"] for m in other_api("GET", "/v1/memories", query={"user_id": "ana"})[1]["memories"]] == [
        theirs["id"]]
    with clients.db.cursor(other_project.project_id) as cur:
        cur.execute("SELECT count(*) AS n FROM user_tombstones WHERE project_id = %s", (other_project.project_id,))
        assert cur.fetchone()["n"] == 0


def test_a_request_naming_a_project_is_refused(api):
    body = {"user_id": "ana", "messages": [{"content": "hi"}], "infer": False, "project": "other"}
    assert_error(*api("POST", "/v1/memories", body=body)[:2], 400, "validation_error")
    assert_error(*api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "x", "project_id": "o"})[:2],
                 400, "validation_error")
    assert_error(*api("GET", "/v1/context", query={"user_id": "ana", "project_id": "other"})[:2], 400)
    assert api("GET", "/v1/memories", query={"user_id": "ana"})[1]["memories"] == []


def test_a_request_without_the_authorizers_project_is_401(memory_api, lambda_context):
    answer = memory_api(event("GET", "/v1/memories", query={"user_id": "ana"}), lambda_context)
    assert answer["statusCode"] == 401
    assert json.loads(answer["body"])["error"]["code"] == "unauthorized"


# ---------------------------------------------------------------- bad input: always a well-formed 4xx


BIG = "x" * (32 * 1024 + 1)


@pytest.mark.parametrize("path,body", [
    ("/v1/memories", {"user_id": "ana", "messages": []}),
    ("/v1/memories", {"user_id": "ana", "messages": [{"content": BIG}]}),
    ("/v1/memories", {"user_id": "ana", "messages": [{"content": "a\u0000b"}], "infer": False}),
    ("/v1/memories", {"user_id": "ana", "messages": [{"content": "hi"}], "metadata": {"k": "\u0000"}}),
    ("/v1/memories", {"user_id": "ana", "messages": [{"content": "hi"}], "metadata": {"k": "x" * 5000}}),
    ("/v1/memories", {"user_id": "ana", "messages": [{"content": "   "}]}),
    ("/v1/memories", {"user_id": "ana", "messages": [{"content": "hi", "role": "robot"}]}),
    ("/v1/memories", {"user_id": "ana", "messages": [{"content": "hi"}], "surprise": 1}),
    ("/v1/memories", {"user_id": "ana", "messages": [{"content": "hi"}] * 101}),
    ("/v1/memories", [1, 2]),
    ("/v1/memories/search", {"user_id": "ana", "query": "x", "limit": 1000}),
    ("/v1/memories/search", {"user_id": "ana", "query": "x", "tiers": ["working"]}),
    ("/v1/memories/search", {"user_id": "ana", "query": "x", "as_of": "yesterday"}),
    ("/v1/memories/search", {"user_id": "ana", "query": "x", "filters": {"a": [{"b": "\ud800"}]}}),
    ("/v1/memories/ask", {"user_id": "ana"}),
    ("/v1/memories/deep-query", {"user_id": "ana/..", "query": "x"}),
])
def test_bad_bodies_are_refused_with_the_error_shape_and_nothing_is_stored(api, clients, project, path, body):
    assert_error(*api("POST", path, body=body)[:2], 400, "validation_error")
    with clients.db.cursor(project.project_id) as cur:
        cur.execute("SELECT count(*) AS n FROM memories WHERE project_id = %s", (project.project_id,))
        assert cur.fetchone()["n"] == 0


@pytest.mark.parametrize("raw", ["{not json", "", "null", '{"user_id": "ana", "messages": [{"content": "a"}], '
                                 '"metadata": {"n": NaN}}', "[" * 5000 + "]" * 5000])
def test_bodies_that_are_not_usable_json_are_400(api, raw):
    assert_error(*api("POST", "/v1/memories", raw_body=raw)[:2], 400, "validation_error")


def test_a_body_that_is_not_utf8_is_400(memory_api, lambda_context, project):
    import base64

    sent = event("POST", "/v1/memories/ask", project=project)
    sent.update(body=base64.b64encode(b"\xff\xfey").decode(), isBase64Encoded=True)
    answer = memory_api(sent, lambda_context)
    assert_error(answer["statusCode"], json.loads(answer["body"]), 400, "validation_error")


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", "application/xml"])
def test_a_body_that_is_not_json_is_415(api, content_type):
    status, body, _ = api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "x"},
                          headers={"content-type": content_type})
    assert_error(status, body, 415, "unsupported_media_type")


def test_a_body_over_the_size_limit_is_413_before_it_is_parsed(api):
    raw = json.dumps({"user_id": "ana", "messages": [{"content": "x" * 30_000}] * 150})
    assert_error(*api("POST", "/v1/memories", raw_body=raw)[:2], 413, "payload_too_large")


def test_an_unknown_route_is_a_well_formed_404(api):
    assert_error(*api("GET", "/v1/nothing-here")[:2], 404, "not_found")


# ---------------------------------------------------------------- jobs, status, OpenAPI, MCP


def test_status_reports_the_projects_own_jobs_and_last_write_per_tier(api, clients, project):
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO processed_jobs (job_id, tier, project_id, user_id, status) VALUES"
                    " ('j1', 'semantic', %s, 'ana', 'done')", (project.project_id,))
    status, body, _ = api("GET", "/v1/status")
    assert status == 200
    assert body["status"] == "ok" and body["project_id"] == project.project_id
    assert "queues" not in body  # the shared queues mix every tenant's jobs
    assert body["outbox"] == {"users": 0, "jobs": 0, "oldest_age_s": 0}
    assert body["held"]["episodic"] == {"jobs": 0, "oldest_age_s": 0}
    assert body["failed_24h"]["semantic"] == {"failed": 0, "dead": 0}
    assert body["last_write"]["semantic"]["status"] == "done"
    assert body["last_write"]["episodic"] is None


def test_the_openapi_document_is_served_without_a_key_and_documents_auth_and_errors(memory_api, lambda_context):
    answer = memory_api(event("GET", "/v1/openapi.json"), lambda_context)
    assert answer["statusCode"] == 200
    doc = json.loads(answer["body"])
    assert doc["components"]["securitySchemes"]["bearer"] == {**doc["components"]["securitySchemes"]["bearer"],
                                                              "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]
    operations = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    # The whole public API: the memory API's routes, the chat function's and the MCP endpoint.
    assert {("POST", "/v1/memories"), ("GET", "/v1/memories"), ("GET", "/v1/memories/{memory_id}"),
            ("GET", "/v1/memories/{memory_id}/history"), ("DELETE", "/v1/memories/{memory_id}"),
            ("PATCH", "/v1/memories/{memory_id}"), ("GET", "/v1/users"), ("GET", "/v1/users/{user_id}/jobs"),
            ("POST", "/v1/memories/search"), ("POST", "/v1/memories/ask"), ("POST", "/v1/memories/deep-query"),
            ("GET", "/v1/context"), ("GET", "/v1/users/{user_id}/narrative"),
            ("POST", "/v1/users/{user_id}/narrative/regenerate"), ("GET", "/v1/users/{user_id}/export"),
            ("DELETE", "/v1/users/{user_id}"), ("GET", "/v1/jobs/{job_id}"), ("GET", "/v1/status"),
            ("POST", "/v1/chat"), ("POST", "/v1/turns"), ("POST", "/mcp")} == set(operations)
    for (_, path), op in operations.items():
        # Validation failures are 400s; only an Idempotency-Key reused with another body is a 422 (the chat
        # function's routes).
        assert ("422" in op["responses"]) == (path in ("/v1/chat", "/v1/turns"))
        for code in ("400",) + (("404",) if "{" in path else ()):
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            # MCP refusals are JSON-RPC errors, as MCP clients expect.
            assert schema == {"$ref": "#/components/schemas/ErrorBody"} or path == "/mcp"
        # Every operation may be rate limited: 429 in the error shape, with Retry-After.
        assert op["responses"]["429"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}
        assert set(op["responses"]["429"]["headers"]) == {"Retry-After"}
        # API Gateway refuses a missing or unknown key itself, in its own shape: both are documented.
        assert {"$ref": "#/components/schemas/GatewayError"} in op["responses"]["401"]["content"][
            "application/json"]["schema"]["anyOf"]
    assert set(operations[("POST", "/v1/memories")]["responses"]) >= {"201", "202"}
    assert "202" in operations[("POST", "/v1/turns")]["responses"] and "200" not in operations[("POST", "/v1/turns")][
        "responses"]
    limit = next(p for p in operations[("GET", "/v1/memories")]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 100


def test_mcp_is_served_by_the_same_function_with_the_keys_project(api, clients, project):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"accept": "application/json, text/event-stream", "x-reverie-user": "ana"}
    status, body, response_headers = api("POST", "/mcp", body=init, headers=headers)
    assert status == 200 and body["result"]["serverInfo"]["name"] == "reverie"

    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "add_memories", "arguments": {"text": "Ana lives in Porto", "infer": False}}}
    status, body, _ = api("POST", "/mcp", body=call, headers={**headers, "mcp-protocol-version": "2025-06-18"})
    assert status == 200 and not body["result"].get("isError"), body
    listed = api("GET", "/v1/memories", query={"user_id": "ana"})[1]["memories"]
    assert [m["text"] for m in listed] == ["Ana lives in Porto"]

    status, _, response_headers = api("GET", "/mcp", headers=headers)
    assert status == 405 and "POST" in response_headers["allow"]


def test_job_status_of_a_forget_is_done_with_an_etag(api):
    job_id = api("DELETE", "/v1/users/ana")[1]["job_id"]
    status, body, headers = api("GET", f"/v1/jobs/{job_id}")
    assert status == 200 and body["status"] == "done"
    assert {t["status"] for t in body["tiers"].values()} == {"done"}
    status, body, _ = api("GET", f"/v1/jobs/{job_id}", headers={"if-none-match": headers["etag"]})
    assert status == 304 and body is None


def test_a_queued_job_says_queued_with_retry_after_until_a_tier_reports(api):
    job_id = api("POST", "/v1/memories", body={"user_id": "ana", "messages": [{"content": "I like tea"}]})[1]["job_id"]
    status, body, headers = api("GET", f"/v1/jobs/{job_id}")
    assert status == 200 and body["status"] == "queued"
    assert int(headers["retry-after"]) > 0 and headers["etag"]
    assert api("GET", f"/v1/jobs/{job_id}", headers={"if-none-match": headers["etag"]})[0] == 304


def test_an_unknown_job_is_404(api):
    assert_error(*api("GET", "/v1/jobs/no-such-job")[:2], 404, "not_found")


def test_user_ids_with_colons_and_at_signs_work_in_the_path(api):
    add(api, "team:ana@home", "Ana lives in Porto")
    # API Gateway (HTTP API) hands the function the decoded path.
    status, export, _ = api("GET", "/v1/users/team:ana@home/export")
    assert status == 200 and export["user_id"] == "team:ana@home" and len(export["memories"]) == 1


def test_mcp_delete_is_405_as_the_stateless_sdk_answers_it(memory_api, lambda_context, project):
    sent = event("DELETE", "/mcp", project=project, headers={"x-reverie-user": "ana",
                                                            "mcp-protocol-version": "2025-06-18"})
    answer = memory_api(sent, lambda_context)
    assert answer["statusCode"] == 405 and "POST" in answer["headers"]["allow"]
    assert [k for k in answer["headers"] if k.lower() == "content-type"] == ["content-type"]
    assert json.loads(answer["body"])["error"]["code"] == -32600
