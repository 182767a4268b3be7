"""The memory API's operations behind the routes and the MCP tools: tool scoping, forget details, faults, and
the offline answer skills."""

from __future__ import annotations

import json
import uuid

import pytest

from reverie import forget
from reverie.api import jobs as api_jobs
from reverie.api import memories as operations
from reverie.api.mcp.tools import TOOLS, StoreTools
from reverie.api.schemas import AddMemoriesRequest, AskRequest
from reverie.cache import job_markers, outbox, users
from reverie.chat import answers as answer
from reverie.domain.errors import ServiceUnavailable, ValidationFailed
from reverie.domain.fields import utcnow
from reverie.domain.memory import Memory, Turn
from reverie.domain.tiers import Tier
from reverie.jobs.message import make_job
from reverie.llm import LLMUnavailable, OfflineLLM
from reverie.store import memories
from tests.support.chat import drain_reflection_jobs
from tests.support.clients import Swapped
from tests.support.memories import remember


def _remember(clients, project_id, user_id, *texts, tier=Tier.SEMANTIC):
    return [remember(clients, project_id, user_id, text, tier) for text in texts]


class ByKeyword:
    """The tools called as a model calls them: by name, with the arguments by position or keyword."""

    def __init__(self, tools):
        self.tools = tools

    def __getattr__(self, name):
        args = next(t.args for t in TOOLS if t.name == name)

        def call(user_id, *positional, **keywords):
            given = dict(zip(args.model_fields, positional, strict=False)) | keywords
            return getattr(self.tools, name)(user_id, args(**given))

        return call


@pytest.fixture
def tools(clients, project):
    yield ByKeyword(StoreTools(clients, project.project_id))
    drain_reflection_jobs(clients, project.project_id)


# ---------------------------------------------------------------- MCP tools over the real stores


def test_delete_memories_tool_deletes_only_the_bound_users_memories(tools, clients, project):
    [anas] = _remember(clients, project.project_id, "ana", "Ana lives in Porto")
    [bobs] = _remember(clients, project.project_id, "bob", "Bob likes jazz")
    missing = str(uuid.uuid4())
    result = tools.delete_memories("ana", [anas, bobs, missing, "not-a-uuid"])
    assert result == {"deleted": [anas], "not_found": [bobs, missing, "not-a-uuid"]}
    assert memories.get(clients.db, project.project_id, bobs) is not None
    assert memories.get(clients.db, project.project_id, anas) is None


def test_tools_add_search_list_ask_and_context_act_for_the_bound_user(tools):
    added = tools.add_memories("ana", "Ana lives in Porto", infer=False, metadata={"via": "mcp"})
    [memory] = added["memories"]
    assert memory["user_id"] == "ana" and memory["metadata"] == {"via": "mcp"}
    assert [r["id"] for r in tools.search_memory("ana", "where does Ana live")["results"]] == [memory["id"]]
    assert tools.search_memory("bob", "where does Ana live")["results"] == []
    assert [m["id"] for m in tools.list_memories("ana")["memories"]] == [memory["id"]]
    assert tools.ask_memory("ana", "Where does Ana live?")["citations"] == [memory["id"]]
    assert tools.deep_memory_query("ana", "Where does Ana live?")["tiers_used"] == ["semantic"]
    context = tools.get_context("ana", query="home", max_tokens=200)
    assert context["memories"][0]["id"] == memory["id"] and context["tokens"] <= 200
    assert "job_id" in tools.add_memories("ana", "I moved to Berlin")


def test_list_memories_tool_pages_at_most_the_api_limit(tools, clients, project):
    _remember(clients, project.project_id, "ana", *[f"fact {i} about birds" for i in range(105)])
    page = tools.list_memories("ana", limit=200)
    assert len(page["memories"]) == 100 and page["next_cursor"]


@pytest.mark.parametrize("call", [
    lambda t: t.search_memory("ana", "   "),
    lambda t: t.search_memory("bad user", "x"),
    lambda t: t.add_memories("ana", "x" * 40_000),
    lambda t: t.list_memories("ana", cursor="garbage"),
    lambda t: t.get_context("ana", max_tokens=1),
    lambda t: t.delete_memories("a b", ["x"]),
])
def test_tool_input_errors_are_validation_failures_the_model_can_read(tools, call):
    with pytest.raises(ValidationFailed) as raised:
        call(tools)
    assert raised.value.status == 400 and raised.value.message


# ---------------------------------------------------------------- forget


def test_forget_drops_the_users_job_markers_and_keeps_other_users(clients, project):
    def job(user):
        made = make_job(project_id=project.project_id, user_id=user, session_id="s",
                             turns=[Turn(role="user", content="hi")], source="api")
        job_markers.remember(clients.valkey, made)
        return made.job_id

    anas, bobs = job("ana"), job("bob")
    forget.forget_user(clients, project.project_id, "ana")
    assert job_markers.known(clients.valkey, project.project_id, anas) is None
    assert job_markers.known(clients.valkey, project.project_id, bobs)["user_id"] == "bob"


def test_forget_outcome_names_no_user(clients, project):
    _remember(clients, project.project_id, "ana-unique-name", "Ana lives in Porto")
    job_id = forget.forget_user(clients, project.project_id, "ana-unique-name")
    receipt = job_markers.forget_receipt(clients.valkey, project.project_id, job_id)
    assert "ana-unique-name" not in json.dumps(receipt) and receipt["counts"]["memories"] == 1


# ---------------------------------------------------------------- faults


def test_ask_when_the_model_is_down_is_503_and_not_a_crash(clients, project):
    _remember(clients, project.project_id, "ana", "Ana lives in Porto")
    down = OfflineLLM(fail_when=lambda op, _: LLMUnavailable("down") if op.startswith("structured") else None)
    with pytest.raises(ServiceUnavailable):
        operations.ask(Swapped(clients, llm=down), project.project_id,
                       AskRequest(user_id="ana", question="Where does Ana live?"))


def test_storing_as_given_when_embeddings_are_down_is_503_and_stores_nothing(clients, project):
    down = OfflineLLM(fail_when=lambda op, _: LLMUnavailable("down") if op == "embed" else None)
    request = AddMemoriesRequest(user_id="ana", messages=[{"content": "Ana lives in Porto"}], infer=False)
    with pytest.raises(ServiceUnavailable):
        operations.add_memories(Swapped(clients, llm=down), project.project_id, request)
    assert memories.list_page(clients.db, project.project_id, "ana")[0] == []


def test_a_job_the_topic_refuses_is_parked_in_the_outbox_and_still_accepted(clients, project):
    refused = Swapped(clients, reflection_topic_arn="arn:aws:sns:us-east-1:123456789012:missing.fifo")
    request = AddMemoriesRequest(user_id="ana", messages=[{"content": "I moved to Berlin"}])
    try:
        reply = operations.add_memories(refused, project.project_id, request)
        assert reply.status == 202
        assert outbox.pending(clients.valkey, project.project_id, "ana") == 1
        assert job_markers.known(clients.valkey, project.project_id, reply.body.job_id)["source"] == "api"
    finally:
        users.delete_user(clients.valkey, project.project_id, "ana")


# ---------------------------------------------------------------- the offline answer skills (no I/O)


def _memory(text, tier=Tier.SEMANTIC, superseded=False):
    now = utcnow()
    return Memory(id=str(uuid.uuid4()), user_id="ana", tier=tier, text=text, created_at=now,
                  superseded_at=now if superseded else None)


def test_answer_skill_cites_the_memories_that_share_words_with_the_question():
    porto, cello = _memory("Ana lives in Porto"), _memory("Ana plays the cello")
    result = OfflineLLM().structured(answer.ask_messages("Where does Ana live?", [cello, porto]), answer.Answer,
                                     purpose="answer").value
    assert result.citations[0] == porto.id and "Porto" in result.answer


def test_answer_skill_cites_nothing_when_no_memory_is_about_the_question():
    result = OfflineLLM().structured(answer.ask_messages("favourite colour?", [_memory("Ana plays the cello")]),
                                     answer.Answer, purpose="answer").value
    assert result.citations == [] and result.answer == answer.NOTHING


def test_deep_query_skill_tells_what_holds_now_from_what_held_before():
    porto, berlin = _memory("Ana lives in Porto", superseded=True), _memory("Ana lives in Berlin")
    sections = {"Facts": [berlin], "Replaced facts": [porto]}
    result = OfflineLLM().structured(answer.deep_messages("Where does Ana live?", sections), answer.Answer,
                                     purpose="deep_query").value
    assert set(result.citations) == {porto.id, berlin.id}
    assert result.answer.index("Berlin") < result.answer.index("Earlier") < result.answer.index("Porto")


def test_memory_lines_keep_one_line_per_memory_whatever_the_text():
    memory = _memory("line one\nline two [not an id] (semantic)")
    line = answer.memory_line(memory)
    assert "\n" not in line and line.startswith(f"[{memory.id}] (semantic, ")


def test_status_names_an_unreachable_engine_instead_of_failing(clients, project):
    report = api_jobs.status(Swapped(clients, valkey_down=True), project.project_id)
    assert report.status == "degraded" and report.outbox.error.startswith("unavailable")
    assert set(report.last_write) == {"episodic", "semantic", "procedural"}
