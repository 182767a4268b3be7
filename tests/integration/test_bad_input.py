"""Bad input on every route, the chat's included, through the handlers as API Gateway calls them: a 4xx in the
error shape, and nothing stored. Each case here was a 500 once (or is its close neighbour): bodies that are not
UTF-8, nested too deep, with an integer too long to read or not JSON at all; timestamps with offsets Postgres
refuses; memory ids Python reads and Postgres does not; NUL and lone surrogates anywhere, the model's answers
included."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from reverie.domain.tiers import TIERS, Tier
from reverie.jobs.message import NarrativeJob
from reverie.reflect import narrative
from reverie.reflect.consumer import handle_batch
from reverie.store import narratives
from tests.support.api import Api, event, nothing_stored
from tests.support.chat import chat_event, chat_handler, post_chat, post_turn, published, tier1
from tests.support.clients import Swapped, swapped
from tests.support.llm import SpyLLM
from tests.support.memories import remember
from tests.support.reflect import event as reflection_event
from tests.support.reflect import job as reflection_job
from tests.support.reflect import memories_of

pytestmark = pytest.mark.integration

# What a model's JSON can carry and no message may: NUL and a lone surrogate.
DIRT = "\x00\ud800"


def clean(text: str) -> bool:
    """Text that can be stored, queued and answered: no NUL, no lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def assert_error(status, body, expected: int | tuple[int, ...], code: str | None = None) -> None:
    expected = (expected,) if isinstance(expected, int) else expected
    assert status in expected, (status, body)
    assert set(body) == {"error"} and isinstance(body["error"]["code"], str) and body["error"]["message"], body
    if code:
        assert body["error"]["code"] == code, body


def send(api: Api, path: str, raw: str, content_type: str = "application/json", *, base64_encoded: bool = False):
    """POST a raw body to the chat function (/v1/chat, /v1/turns) or the memory API, as API Gateway would."""
    if path in CHAT_FUNCTION_ROUTES:
        sent = chat_event(api.project.project_id, raw, headers={"content-type": content_type}, path=path)
        sent["isBase64Encoded"] = base64_encoded
        answer = chat_handler()(sent, api.context)
    else:
        sent = event("POST", path, project=api.project, raw_body=raw, headers={"content-type": content_type})
        sent["isBase64Encoded"] = base64_encoded
        answer = api.handler(sent, api.context)
    body = json.loads(answer["body"]) if answer.get("body") else None
    return answer["statusCode"], body


# ---------------------------------------------------------------- bodies


def _body(path: str, text: str = "I live in Porto", metadata: dict | None = None) -> dict:
    """A valid body of each route that takes one, with `text` and `metadata` where the route takes them."""
    metadata = metadata or {}
    return {
        "/v1/chat": {"user_id": "ana", "session_id": "s1", "message": text, "metadata": metadata},
        "/v1/turns": {"user_id": "ana", "session_id": "s1", "metadata": metadata,
                      "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Noted."}]},
        "/v1/memories": {"user_id": "ana", "messages": [{"content": text}], "infer": False, "metadata": metadata},
        "/v1/memories#infer": {"user_id": "ana", "messages": [{"content": text}], "metadata": metadata},
        "/v1/memories/search": {"user_id": "ana", "query": text, "filters": metadata},
        "/v1/memories/ask": {"user_id": "ana", "question": text},
        "/v1/memories/deep-query": {"user_id": "ana", "query": text},
    }[path]


CHAT_FUNCTION_ROUTES = ("/v1/chat", "/v1/turns")
BODY_ROUTES = ["/v1/chat", "/v1/turns", "/v1/memories", "/v1/memories#infer", "/v1/memories/search", "/v1/memories/ask",
               "/v1/memories/deep-query"]
TOO_LONG_INT = "1" * 5000


def _unreadable(path: str) -> dict[str, tuple[str, str, bool, int, str]]:
    """name -> (raw body, content type, base64, status, code) of bodies no route can read."""
    valid = json.dumps(_body(path))
    fields = _body(path)
    form = "&".join(f"{k}={v}" for k, v in fields.items() if isinstance(v, str))
    multipart = "".join(f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                        for k, v in fields.items() if isinstance(v, str)) + "--b--\r\n"
    with_int = valid[:-1] + f', "n": {TOO_LONG_INT}}}'
    return {
        "not UTF-8": (base64.b64encode(valid.replace("Porto", "P\xf4rto").encode("latin-1")).decode(),
                      "application/json", True, 400, "validation_error"),
        "an array nested 5,000 deep": ("[" * 5000 + "]" * 5000, "application/json", False, 400, "validation_error"),
        "an object nested 5,000 deep": ('{"a":' * 5000 + "1" + "}" * 5000, "application/json", False, 400,
                                        "validation_error"),
        "an integer of 5,000 digits": (with_int, "application/json", False, 400, "validation_error"),
        "multipart/form-data with no boundary": (valid, "multipart/form-data", False, 415, "unsupported_media_type"),
        "multipart/form-data with the fields": (multipart, "multipart/form-data; boundary=b", False, 415,
                                                "unsupported_media_type"),
        "a form with the fields": (form, "application/x-www-form-urlencoded", False, 415, "unsupported_media_type"),
        "JSON sent as text/plain": (valid, "text/plain", False, 415, "unsupported_media_type"),
        "JSON sent as application/xml": (valid, "application/xml", False, 415, "unsupported_media_type"),
    }


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("case", list(_unreadable("/v1/chat")))
def test_a_body_no_route_can_read_is_a_4xx_in_the_error_shape_and_nothing_is_stored(api, clients, path, case):
    raw, content_type, encoded, status, code = _unreadable(path)[case]
    assert_error(*send(api, path.split("#")[0], raw, content_type, base64_encoded=encoded), status, code)
    assert nothing_stored(api, clients, "ana")


def _dirty_bodies(path: str) -> dict[str, dict]:
    """name -> a body with NUL or a lone surrogate where the route takes text or metadata."""
    cases = {
        "NUL in the text": _body(path, "I live in\x00 Porto"),
        "a lone high surrogate in the text": _body(path, "I live in \ud800Porto"),
        "a lone low surrogate in the text": _body(path, "I live in \udfffPorto"),
    }
    if path in ("/v1/chat", "/v1/turns", "/v1/memories", "/v1/memories#infer", "/v1/memories/search"):
        cases |= {
            "NUL in a metadata key": _body(path, metadata={"a\x00": "x"}),
            "NUL in a metadata value": _body(path, metadata={"a": ["x\x00"]}),
            "a lone surrogate in a metadata key": _body(path, metadata={"\ud800": 1}),
            "a lone surrogate in a nested metadata value": _body(path, metadata={"a": {"b": "\udc00"}}),
        }
    return cases


@pytest.mark.parametrize("path,case", [(p, c) for p in BODY_ROUTES for c in _dirty_bodies(p)])
def test_nul_and_lone_surrogates_in_a_body_are_a_400_and_nothing_is_stored(api, clients, path, case):
    raw = json.dumps(_dirty_bodies(path)[case])  # escaped as \\u0000 and \\ud800: JSON carries them
    assert_error(*send(api, path.split("#")[0], raw), 400, "validation_error")
    assert nothing_stored(api, clients, "ana")


# ---------------------------------------------------------------- query strings and headers


def _query_event(api: Api, path: str, query: dict[str, str], headers: dict[str, str] | None = None) -> dict:
    return event("GET", path, project=api.project, query=query, headers=headers)


@pytest.mark.parametrize("path,query", [
    ("/v1/memories", {"user_id": "ana\x00"}),
    ("/v1/memories", {"user_id": "ana", "cursor": "abc\ud800"}),
    ("/v1/memories", {"user_id": "ana", "cursor": "abc\x00"}),
    ("/v1/memories", {"user_id": "ana", "limit": TOO_LONG_INT}),
    ("/v1/context", {"user_id": "ana", "query": "where do I\x00 live"}),
    ("/v1/context", {"user_id": "ana", "query": "where do I \ud800live"}),
    ("/v1/context", {"user_id": "ana", "session_id": "s\ud800"}),
    ("/v1/context", {"user_id": "ana", "max_tokens": TOO_LONG_INT}),
    ("/v1/users/ana/export", {"cursor": "\udfff"}),
])
def test_nul_lone_surrogates_and_huge_numbers_in_a_query_string_are_a_400(api, clients, path, query):
    answer = api.handler(_query_event(api, path, query), api.context)
    assert_error(answer["statusCode"], json.loads(answer["body"]), 400, "validation_error")
    assert nothing_stored(api, clients, "ana")


@pytest.mark.parametrize("path", CHAT_FUNCTION_ROUTES)
@pytest.mark.parametrize("value", ["a\x00b", "a\ud800b", "caf\xe9", " ", "x" * 256])
def test_a_bad_idempotency_key_is_a_400_and_the_chat_stores_nothing(api, clients, project, value, path):
    post = post_turn if path == "/v1/turns" else post_chat
    status, body = post(project.project_id, _body(path), key=value)
    assert_error(status, body, 400, "validation_error")
    assert nothing_stored(api, clients, "ana")


@pytest.mark.parametrize("value", ["a\x00b", "a\ud800b"])
def test_nul_or_a_lone_surrogate_in_if_none_match_is_answered_as_any_other_etag(api, value):
    queued = api("POST", "/v1/memories", body=_body("/v1/memories#infer"))[1]
    sent = event("GET", f"/v1/jobs/{queued['job_id']}", project=api.project, headers={"if-none-match": value})
    answer = api.handler(sent, api.context)
    assert answer["statusCode"] in (200, 400), answer
    if answer["statusCode"] == 400:
        assert_error(400, json.loads(answer["body"]), 400, "validation_error")


# ---------------------------------------------------------------- timestamps Postgres refuses


def test_as_of_takes_any_offset_and_means_the_same_moment(api):
    """ISO 8601 allows offsets to +/-23:59, Postgres to +/-15:59: as_of is compared in UTC."""
    [porto] = api("POST", "/v1/memories", body=_body("/v1/memories"))[1]["memories"]
    search = {"user_id": "ana", "query": "Where do I live?"}

    def found(as_of: str) -> list[str]:
        status, body, _ = api("POST", "/v1/memories/search", body={**search, "as_of": as_of})
        assert status == 200, body
        return [hit["id"] for hit in body["results"]]

    assert found("2999-01-01T20:00:00+20:00") == [porto["id"]]
    assert found("2000-01-01T00:00:00-23:59") == []
    assert found("0001-01-01T00:00:00+23:59") == []  # before year 1 in UTC: the first moment
    assert found("9999-12-31T23:59:59-23:59") == [porto["id"]]  # after 9999 in UTC: the last moment
    assert found("2999-01-01T00:00:00") == [porto["id"]]  # no offset: UTC


def _cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("at,memory_id", [
    ("2999-01-01T00:00:00+20:00", "{id}"),
    ("2999-01-01T00:00:00-23:59", "{id}"),
    ("2999-01-01T00:00:00+15:59:59.999999", "{id}"),
    ("2999-01-01T00:00:00+00:00", "urn:uuid:{id}"),
    ("2999-01-01T00:00:00+00:00", "{{{id}}}"),
    ("0001-01-01T00:00:00+20:00", "{id}"),
])
def test_a_crafted_list_cursor_is_read_in_utc_or_refused(api, at, memory_id):
    [porto] = api("POST", "/v1/memories", body=_body("/v1/memories"))[1]["memories"]
    cursor = _cursor([at, memory_id.format(id=porto["id"])])
    status, body, _ = api("GET", "/v1/memories", query={"user_id": "ana", "cursor": cursor})
    assert status == 200, body
    assert [m["id"] for m in body["memories"]] == ([porto["id"]] if at.startswith("2999") else [])


@pytest.mark.parametrize("cursor,status", [
    (["memories", ["2000-01-01T00:00:00+20:00", "{id}"]], 200),
    (["memories", ["2000-01-01T00:00:00+15:59:59.5", "{id}"]], 200),
    (["memories", ["2000-01-01T00:00:00+00:00", "urn:uuid:{id}"]], 200),
    (["memories", ["2000-01-01T00:00:00+00:00", "{{{id}}}"]], 200),
    (["narratives", [2**40]], 400),
    (["events", [2**63]], 400),
    (["jobs", ["2000-01-01T00:00:00+00:00", "a\ud800", "semantic"]], 400),
    (["jobs", ["2000-01-01T00:00:00+00:00", "a\x00", "semantic"]], 400),
    (["memories", ["not a time", "{id}"]], 400),
])
def test_a_crafted_export_cursor_is_read_in_utc_or_refused(api, cursor, status):
    [porto] = api("POST", "/v1/memories", body=_body("/v1/memories"))[1]["memories"]
    part, after = cursor
    after = [a.format(id=porto["id"]) if isinstance(a, str) else a for a in after]
    got, body, _ = api("GET", "/v1/users/ana/export", query={"cursor": _cursor([part, after])})
    if status == 400:
        assert_error(got, body, 400, "validation_error")
    else:
        assert got == 200 and [m["id"] for m in body["memories"]] == [porto["id"]], body


# ---------------------------------------------------------------- memory ids in forms Postgres refuses


def _other_forms(memory_id: str) -> list[str]:
    plain = memory_id.replace("-", "")
    return [f"urn:uuid:{memory_id}", f"{{{memory_id}}}", f"{{{plain}}}", f"}}{memory_id}{{", f"{{{memory_id}",
            plain, "-".join(plain), f"URN:UUID:{memory_id}"]


@pytest.mark.parametrize("method,suffix", [("GET", ""), ("GET", "/history"), ("DELETE", "")])
def test_a_memory_id_python_reads_but_postgres_refuses_is_simply_not_found(api, method, suffix):
    [porto] = api("POST", "/v1/memories", body=_body("/v1/memories"))[1]["memories"]
    for form in _other_forms(porto["id"]):
        assert uuid.UUID(form.replace("URN", "urn").replace("UUID", "uuid")) == uuid.UUID(porto["id"])
        assert_error(*api(method, f"/v1/memories/{form}{suffix}")[:2], 404, "not_found")
    assert api("GET", f"/v1/memories/{porto['id']}")[0] == 200  # still there, unchanged
    assert api("GET", f"/v1/memories/{porto['id'].upper()}")[0] == 200  # the canonical form, in capitals


def _mcp_call(api: Api, tool: str, arguments: dict) -> tuple[int, dict]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    status, answer, _ = api("POST", "/mcp", body=body, headers={"accept": "application/json, text/event-stream",
                                                                "x-reverie-user": "ana"})
    return status, answer["result"]["structuredContent"] if status == 200 else answer


def test_mcp_delete_memories_does_not_find_ids_in_other_forms_and_deletes_nothing(api):
    [porto] = api("POST", "/v1/memories", body=_body("/v1/memories"))[1]["memories"]
    forms = [*_other_forms(porto["id"]), "a\x00b"]
    status, result = _mcp_call(api, "delete_memories", {"memory_ids": forms})
    assert status == 200 and result["deleted"] == [] and len(result["not_found"]) == len(forms), result
    assert all(clean(i) for i in result["not_found"])
    assert api("GET", f"/v1/memories/{porto['id']}")[0] == 200


@pytest.mark.parametrize("tool,arguments", [
    ("add_memories", {"text": "I live in\x00 Porto", "infer": False}),
    ("add_memories", {"text": "I live in Porto", "infer": False, "metadata": {"a": "\x00"}}),
    ("search_memory", {"query": "Porto\x00"}),
    ("ask_memory", {"question": "Where\x00?"}),
])
def test_mcp_tools_refuse_nul_as_a_tool_error_and_store_nothing(api, clients, tool, arguments):
    status, result = _mcp_call(api, tool, arguments)
    assert status == 200 and result["error"]["code"] == "validation_error", result
    assert nothing_stored(api, clients, "ana")


@pytest.mark.parametrize("arguments", [
    {"text": "I live in \ud800Porto"}, {"text": "I live in Porto", "infer": False, "metadata": {"\udfff": 1}},
    {"memory_ids": ["\ud800"]},
])
def test_mcp_refuses_a_lone_surrogate_as_json_it_cannot_parse_and_stores_nothing(api, clients, arguments):
    tool = "delete_memories" if "memory_ids" in arguments else "add_memories"
    status, answer = _mcp_call(api, tool, arguments)
    assert status == 400 and answer["error"]["code"] == -32700, answer  # a JSON-RPC parse error
    assert nothing_stored(api, clients, "ana")


# ---------------------------------------------------------------- what the model gives back


@pytest.fixture
def dirty_model(clients):
    """The offline model, answering with NUL and a lone surrogate appended to its text."""
    spy = SpyLLM(taint=DIRT)
    with swapped(clients, llm=spy):
        yield spy


def test_a_reply_with_nul_and_lone_surrogates_is_cleaned_before_it_is_answered_or_stored(api, clients, project,
                                                                                          dirty_model):
    status, answer = post_chat(project.project_id, _body("/v1/chat", "Hello there"))
    assert status == 200 and clean(answer["reply"]) and answer["reply"].endswith("\ufffd")
    turns = tier1(clients, project.project_id, "ana", "s1")
    assert turns[-1].content == answer["reply"]
    (job,) = published(clients, project.project_id, Tier.EPISODIC)
    assert all(clean(t.content) for t in job.turns)


@pytest.mark.parametrize("path", ["/v1/memories/ask", "/v1/memories/deep-query"])
def test_an_answer_with_nul_and_lone_surrogates_is_cleaned(api, clients, project, path, dirty_model):
    remember(clients, project.project_id, "ana", "User lives in Porto")
    status, body, _ = api("POST", path, body=_body(path, "Where does the user live?"))
    assert status == 200, body
    assert clean(body["answer"]) and "Porto" in body["answer"] and body["citations"]


def test_a_narrative_with_nul_and_lone_surrogates_is_stored_clean(clients, project, dirty_model):
    remember(clients, project.project_id, "ana", "User lives in Porto")
    outcome = narrative.generate(clients, NarrativeJob(project_id=project.project_id, user_id="ana"))
    assert outcome["version"] == 1
    assert clean(narratives.latest(clients.db, project.project_id, "ana")["text"])


def test_what_reflection_extracts_with_nul_and_lone_surrogates_is_stored_clean(clients, project, lambda_context):
    reflecting = Swapped(clients, llm=SpyLLM(taint=DIRT))
    said = reflection_job(project.project_id, "ana", "I live in Porto and my sister is Ana.",
                          "Please always answer in Portuguese.")
    for tier in TIERS:
        assert handle_batch(tier, reflection_event(said), lambda_context, reflecting) == {"batchItemFailures": []}
    stored = memories_of(clients.db, project.project_id, "ana")
    assert {m["tier"] for m in stored} == {"episodic", "semantic", "procedural"}
    for memory in stored:
        assert clean(memory["text"]) and clean(json.dumps(memory["metadata"], ensure_ascii=False)), memory
