"""What the memory inspector needs of the API, through the memory API's handler on the real engines: the project's
users with counts (GET /v1/users), a person's correction of a memory (PATCH /v1/memories/{id}), a user's recent jobs
with each tier's outcome (GET /v1/users/{id}/jobs), superseded memories in a list, and the page itself (/ui)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reverie.api import inspector
from reverie.cache import job_markers
from reverie.store import held_jobs, memories
from reverie.store.db import vector_literal
from tests.support.api import event
from tests.support.clients import swapped
from tests.support.reflect import job as reflection_job


def add(api, user, *texts, tier="semantic"):
    status, body, _ = api("POST", "/v1/memories", body={
        "user_id": user, "messages": [{"role": "user", "content": t} for t in texts], "infer": False, "tier": tier})
    assert status == 201, body
    return body["memories"]


def outcome(clients, project_id, job_id, user_id, tier, status, **columns):
    names = ["job_id", "tier", "project_id", "user_id", "status", *columns]
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO processed_jobs ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
                    (job_id, tier, project_id, user_id, status, *columns.values()))


def assert_error(status, body, expected_status, code=None):
    assert status == expected_status, body
    assert set(body) == {"error"} and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


# ---------------------------------------------------------------- GET /v1/users


def test_users_are_listed_in_id_order_with_their_counts_and_last_activity(api, clients, project):
    assert api("GET", "/v1/users")[:2] == (200, {"users": [], "next_cursor": None})
    add(api, "ana", "Ana lives in Porto", "Ana has a sister called Rita")
    add(api, "ana", "Answer Ana in short bullet points", tier="procedural")
    [old] = add(api, "bob", "Bob lives in Lyon")
    [new] = add(api, "bob", "Bob lives in Paris")
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        assert memories.supersede(cur, project.project_id, "bob", old["id"], new["id"], job_id="j-bob")
    outcome(clients, project.project_id, "j-bob", "bob", "semantic", "done", added=1, superseded=1)
    outcome(clients, project.project_id, "j-bob", "bob", "episodic", "failed", error="model timed out")
    outcome(clients, project.project_id, "j-cy", "cy", "episodic", "empty", reason="small talk")
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        held_jobs.hold(cur, project.project_id, "dee", "semantic",
                       [("j-dee", reflection_job(project.project_id, "dee", "I like tea").model_dump(mode="json"))])

    status, page, _ = api("GET", "/v1/users")
    assert status == 200 and page["next_cursor"] is None
    users = {u["user_id"]: u for u in page["users"]}
    assert list(users) == ["ana", "bob", "cy", "dee"]
    assert users["ana"]["memories"] == {"episodic": 0, "semantic": 2, "procedural": 1, "superseded": 0}
    assert users["bob"]["memories"] == {"episodic": 0, "semantic": 1, "procedural": 0, "superseded": 1}
    assert (users["bob"]["jobs"], users["bob"]["failed_jobs"], users["bob"]["held_jobs"]) == (1, 1, 0)
    assert (users["cy"]["jobs"], users["cy"]["failed_jobs"]) == (1, 0)
    assert (users["dee"]["jobs"], users["dee"]["held_jobs"]) == (0, 1)
    assert all(u["narrative_version"] is None for u in users.values())
    for user in users.values():
        assert datetime.fromisoformat(user["last_activity"]) <= datetime.now(UTC)


def test_users_page_through_with_the_cursor_and_filter_by_prefix(api, other_api):
    for user in ("u-a", "u-b", "u-c", "u-d", "u-e", "x-1"):
        add(api, user, f"{user} likes jazz")
    add(other_api, "u-zz", "someone of another project")
    seen, cursor = [], None
    for _ in range(4):
        status, page, _ = api("GET", "/v1/users", query={"limit": 2, "cursor": cursor})
        assert status == 200 and len(page["users"]) <= 2
        seen += [u["user_id"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["u-a", "u-b", "u-c", "u-d", "u-e", "x-1"]
    status, page, _ = api("GET", "/v1/users", query={"prefix": "u-"})
    assert [u["user_id"] for u in page["users"]] == ["u-a", "u-b", "u-c", "u-d", "u-e"]
    status, page, _ = api("GET", "/v1/users", query={"prefix": "u_"})  # LIKE's wildcard is a plain character here
    assert status == 200 and page["users"] == []


@pytest.mark.parametrize("query", [
    {"cursor": "bm90IG91cnMh"},  # "not ours!": not a user id
    {"cursor": "!!"}, {"limit": 0}, {"limit": 101}, {"prefix": "a b"}, {"prefix": "x" * 129}, {"project": "p"},
])
def test_users_refuse_bad_query_parameters_with_400(api, query):
    assert_error(*api("GET", "/v1/users", query=query)[:2], 400)


# ---------------------------------------------------------------- PATCH /v1/memories/{id}


def test_an_edit_rewords_a_memory_in_place_embeds_it_again_and_records_an_update(api, clients, project):
    [memory] = add(api, "ana", "Ana lives in Porto")
    new_text = "Ana lives in Lisbon, near the river"
    status, edited, _ = api("PATCH", f"/v1/memories/{memory['id']}", body={"text": new_text})
    assert status == 200, edited
    assert edited["id"] == memory["id"] and edited["text"] == "Ana lives in Lisbon, near the river"
    assert edited["updated_at"] > memory["created_at"]
    history = api("GET", f"/v1/memories/{memory['id']}/history")[1]["events"]
    assert [(e["event"], e["old_text"], e["new_text"]) for e in history] == [
        ("ADD", None, "Ana lives in Porto"), ("UPDATE", "Ana lives in Porto", "Ana lives in Lisbon, near the river")]
    # The embedding is the new words': a search by meaning finds it by them.
    hits = api("POST", "/v1/memories/search", body={"user_id": "ana", "query": "Lisbon river"})[1]["results"]
    assert hits[0]["id"] == memory["id"]
    with clients.db.cursor(project.project_id) as cur:
        cur.execute("SELECT embedding = %s::vector AS same FROM memories WHERE id = %s",
                    (vector_literal(clients.llm.embed(["Ana lives in Lisbon, near the river"]).vectors[0]),
                     memory["id"]))
        assert cur.fetchone()["same"]
        cur.execute("SELECT purpose FROM llm_usage WHERE project_id = %s AND user_id = 'ana' ORDER BY id",
                    (project.project_id,))
        assert [r["purpose"] for r in cur.fetchall()] == ["embed", "embed"]


def test_an_edited_semantic_fact_keeps_its_history_and_the_facts_it_superseded(api, clients, project):
    [porto] = add(api, "ana", "Ana lives in Porto")
    before = datetime.now(UTC)
    [berlin] = add(api, "ana", "Ana lives in Berlin")
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        assert memories.supersede(cur, project.project_id, "ana", porto["id"], berlin["id"], job_id="j1")
    status, edited, _ = api("PATCH", f"/v1/memories/{berlin['id']}", body={"text": "Ana lives in Berlin-Kreuzberg"})
    assert status == 200 and edited["tier"] == "semantic"
    old = api("GET", f"/v1/memories/{porto['id']}")[1]
    assert old["superseded_by"] == berlin["id"] and old["text"] == "Ana lives in Porto"
    assert [e["event"] for e in api("GET", f"/v1/memories/{porto['id']}/history")[1]["events"]] == ["ADD", "SUPERSEDE"]
    assert [e["event"] for e in api("GET", f"/v1/memories/{berlin['id']}/history")[1]["events"]] == ["ADD", "UPDATE"]
    query = {"user_id": "ana", "query": "where does Ana live"}
    then = api("POST", "/v1/memories/search", body={**query, "as_of": before.isoformat()})[1]["results"]
    assert [r["text"] for r in then] == ["Ana lives in Porto"]
    # What was true then is history: a superseded memory is not edited.
    status, body, _ = api("PATCH", f"/v1/memories/{porto['id']}", body={"text": "Ana lived in Faro"})
    assert_error(status, body, 409, "conflict")
    assert api("GET", f"/v1/memories/{porto['id']}")[1]["text"] == "Ana lives in Porto"


def test_an_edit_into_words_another_current_memory_holds_is_a_conflict(api):
    [porto, sister] = add(api, "ana", "Ana lives in Porto", "Ana has a sister")
    status, body, _ = api("PATCH", f"/v1/memories/{sister['id']}", body={"text": "ana lives in porto!"})
    assert_error(status, body, 409, "conflict")
    assert api("GET", f"/v1/memories/{sister['id']}")[1]["text"] == "Ana has a sister"
    assert [e["event"] for e in api("GET", f"/v1/memories/{sister['id']}/history")[1]["events"]] == ["ADD"]
    # The same words again change nothing and spend no model call.
    status, same, _ = api("PATCH", f"/v1/memories/{porto['id']}", body={"text": "Ana lives in Porto"})
    assert status == 200 and same["updated_at"] == porto["updated_at"]
    assert [e["event"] for e in api("GET", f"/v1/memories/{porto['id']}/history")[1]["events"]] == ["ADD"]


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "   "}, {"text": "a\x00b"}, {"text": 3},
                                  {"text": "x", "tier": "semantic"}, {"text": "x", "project_id": "p"},
                                  {"text": "x" * (32 * 1024 + 1)}])
def test_an_edit_with_a_bad_body_is_400_and_changes_nothing(api, body):
    [memory] = add(api, "ana", "Ana lives in Porto")
    assert_error(*api("PATCH", f"/v1/memories/{memory['id']}", body=body)[:2], 400, "validation_error")
    assert api("GET", f"/v1/memories/{memory['id']}")[1]["text"] == "Ana lives in Porto"


def test_an_edit_of_an_unknown_or_another_projects_memory_is_404(api, other_api):
    [theirs] = add(other_api, "ana", "Ana lives in Porto")
    for memory_id in (theirs["id"], "00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        assert_error(*api("PATCH", f"/v1/memories/{memory_id}", body={"text": "mine now"})[:2], 404, "not_found")
    assert other_api("GET", f"/v1/memories/{theirs['id']}")[1]["text"] == "Ana lives in Porto"


def test_an_edit_when_the_embedding_model_is_down_is_503_and_changes_nothing(api, clients):
    [memory] = add(api, "ana", "Ana lives in Porto")

    class Down:
        embedding_model = "down"

        def embed(self, texts, timeout_s=None):
            from reverie.llm import LLMError
            raise LLMError("down")

    with swapped(clients, llm=Down()):
        status, body, _ = api("PATCH", f"/v1/memories/{memory['id']}", body={"text": "Ana lives in Faro"})
    assert_error(status, body, 503, "unavailable")
    assert api("GET", f"/v1/memories/{memory['id']}")[1]["text"] == "Ana lives in Porto"


# ---------------------------------------------------------------- GET /v1/memories?include_superseded


def test_a_list_includes_superseded_memories_when_asked(api, clients, project):
    [porto] = add(api, "ana", "Ana lives in Porto")
    [berlin] = add(api, "ana", "Ana lives in Berlin")
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        memories.supersede(cur, project.project_id, "ana", porto["id"], berlin["id"], job_id=None)
    current = api("GET", "/v1/memories", query={"user_id": "ana"})[1]["memories"]
    assert [m["id"] for m in current] == [berlin["id"]]
    everything = api("GET", "/v1/memories", query={"user_id": "ana", "include_superseded": "true"})[1]["memories"]
    assert [m["id"] for m in everything] == [berlin["id"], porto["id"]]
    assert everything[1]["superseded_at"] and everything[1]["superseded_by"] == berlin["id"]
    assert_error(*api("GET", "/v1/memories", query={"user_id": "ana", "include_superseded": "maybe"})[:2], 400)


# ---------------------------------------------------------------- GET /v1/users/{id}/jobs


def test_a_users_jobs_show_each_tiers_outcome_reason_and_what_is_still_queued(api, clients, project):
    pid = project.project_id
    outcome(clients, pid, "j-done", "ana", "episodic", "done", added=1)
    outcome(clients, pid, "j-done", "ana", "semantic", "done", added=2, superseded=1)
    outcome(clients, pid, "j-done", "ana", "procedural", "empty", reason="no preference stated")
    outcome(clients, pid, "j-bad", "ana", "semantic", "dead", error="model refused")
    outcome(clients, pid, "j-other", "bob", "semantic", "done")
    outcome(clients, pid, "j-story", "ana", "narrative", "done", reason="version 1")
    held = reflection_job(pid, "ana", "I like tea")
    with clients.db.transaction(pid) as conn, conn.cursor() as cur:
        held_jobs.hold(cur, pid, "ana", "semantic", [(held.job_id, held.model_dump(mode="json"))])
    status, accepted, _ = api("POST", "/v1/memories", body={"user_id": "ana", "messages": [
        {"role": "user", "content": "I moved to Berlin"}]})
    assert status == 202
    refused = reflection_job(pid, "ana", "something the topic refused")
    job_markers.remember(clients.valkey, refused)
    job_markers.mark_refused(clients.valkey, pid, refused.job_id, "too large")

    status, body, _ = api("GET", "/v1/users/ana/jobs")
    assert status == 200 and body["user_id"] == "ana" and body["degraded"] == []
    jobs = {j["job_id"]: j for j in body["jobs"]}
    assert set(jobs) == {"j-done", "j-bad", "j-story", held.job_id, accepted["job_id"], refused.job_id}
    story = jobs["j-story"]
    assert story["status"] == "done" and story["tiers"] == {} and story["narrative"]["reason"] == "version 1"
    done = jobs["j-done"]
    assert done["status"] == "done" and done["tiers"]["semantic"]["added"] == 2
    assert done["tiers"]["semantic"]["superseded"] == 1
    procedural = done["tiers"]["procedural"]
    assert (procedural["status"], procedural["added"], procedural["reason"]) == ("empty", 0, "no preference stated")
    assert jobs["j-bad"]["status"] == "dead" and jobs["j-bad"]["tiers"]["semantic"]["error"] == "model refused"
    assert jobs["j-bad"]["tiers"]["episodic"]["status"] == "queued"
    waiting = jobs[held.job_id]
    assert waiting["status"] == "queued" and "held with the user's next jobs" in waiting["tiers"]["semantic"]["reason"]
    assert waiting["created_at"] is not None and waiting["updated_at"] is not None
    fresh = jobs[accepted["job_id"]]
    assert fresh["status"] == "queued" and fresh["created_at"] and fresh["updated_at"] is None
    assert {t["status"] for t in fresh["tiers"].values()} == {"queued"}
    assert jobs[refused.job_id]["status"] == "failed"
    assert jobs[refused.job_id]["tiers"]["semantic"]["reason"] == "refused: too large"
    # The latest to move first; `limit` keeps the newest.
    moved = [j["updated_at"] or j["created_at"] for j in body["jobs"]]
    assert moved == sorted(moved, reverse=True)
    status, few, _ = api("GET", "/v1/users/ana/jobs", query={"limit": 2})
    assert [j["job_id"] for j in few["jobs"]] == [j["job_id"] for j in body["jobs"][:2]]
    # Each job's status is the one GET /v1/jobs/{id} answers.
    for job_id, listed in jobs.items():
        single = api("GET", f"/v1/jobs/{job_id}")[1]
        assert single["tiers"] == listed["tiers"] and single["status"] == listed["status"]


def test_a_users_jobs_without_valkey_are_those_postgres_knows_and_say_so(api, clients, project):
    outcome(clients, project.project_id, "j-1", "ana", "semantic", "done")
    with swapped(clients, valkey_down=True, rate_limit_per_minute=0, rate_limit_model_per_minute=0):
        status, body, _ = api("GET", "/v1/users/ana/jobs")
    assert status == 200 and body["degraded"] == ["valkey"]
    assert [j["job_id"] for j in body["jobs"]] == ["j-1"]


def test_a_users_jobs_are_of_the_keys_project_and_the_user_only(api, other_api, clients, other_project):
    outcome(clients, other_project.project_id, "j-x", "ana", "semantic", "done")
    assert api("GET", "/v1/users/ana/jobs")[1]["jobs"] == []
    assert [j["job_id"] for j in other_api("GET", "/v1/users/ana/jobs")[1]["jobs"]] == ["j-x"]
    assert other_api("GET", "/v1/users/bob/jobs")[1]["jobs"] == []
    for query in ({"limit": 0}, {"limit": 101}, {"limit": "x"}):
        assert_error(*api("GET", "/v1/users/ana/jobs", query=query)[:2], 400)
    assert_error(*api("GET", "/v1/users/a%20b/jobs")[:2], 400)


# ---------------------------------------------------------------- the page


def page(memory_api, lambda_context, path, headers=None):
    answer = memory_api(event("GET", path, headers=headers), lambda_context)  # no key: the route has no authorizer
    return answer["statusCode"], answer.get("body"), {k.lower(): v for k, v in (answer.get("headers") or {}).items()}


@pytest.mark.parametrize(("path", "content_type"), [
    ("/ui", "text/html"), ("/ui/inspector.js", "text/javascript"), ("/ui/inspector.css", "text/css")])
def test_the_inspector_is_served_without_a_key_with_strict_security_headers(memory_api, lambda_context, path,
                                                                             content_type):
    status, body, headers = page(memory_api, lambda_context, path)
    assert status == 200 and headers["content-type"].startswith(content_type) and body
    csp = dict(part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert csp["connect-src"] == "'self'" and csp["frame-ancestors"] == "'none'"
    assert csp["require-trusted-types-for"] == "'script'"
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "unsafe-eval" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer" and headers["cross-origin-opener-policy"] == "same-origin"
    # Revalidated, not cached blindly: the same ETag answers 304.
    status, body, again = page(memory_api, lambda_context, path, headers={"if-none-match": headers["etag"]})
    assert status == 304 and not body and again["etag"] == headers["etag"]


def test_the_page_has_no_inline_script_or_style_and_keeps_the_key_for_the_tab_only():
    html = inspector.assets()["index.html"].body
    assert "<script>" not in html and " style=" not in html and "<style" not in html and "onclick" not in html
    script = inspector.assets()["inspector.js"].body
    assert "sessionStorage" in script and "localStorage" not in script and "document.cookie" not in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script


def test_an_unknown_file_of_the_inspector_is_a_well_formed_404(memory_api, lambda_context):
    for path in ("/ui/nope.js", "/ui/..", "/ui/%2e%2e"):
        status, body, _ = page(memory_api, lambda_context, path)
        assert status == 404 and '"not_found"' in body
