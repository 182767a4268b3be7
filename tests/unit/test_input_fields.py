"""The fields every boundary reads the same way: timestamps compared in UTC, memory ids in the one form they
are given out in, and model text made storable; and which routes spend model calls (the tighter rate limit)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reverie.api import limits
from reverie.api.schemas import AddMemoriesRequest, SearchRequest
from reverie.domain.fields import FORBIDDEN, as_utc, canonical_uuid, storable_text, storable_value


@given(st.datetimes(timezones=st.builds(timezone, st.timedeltas(min_value=-timedelta(hours=23, minutes=59),
                                                                max_value=timedelta(hours=23, minutes=59)))))
def test_any_offset_becomes_the_same_moment_in_utc_or_the_edge_it_passed(moment):
    utc = as_utc(moment)
    assert utc.utcoffset() == timedelta(0)
    if datetime.min.replace(tzinfo=UTC) < utc < datetime.max.replace(tzinfo=UTC):
        assert utc == moment


def test_a_time_without_an_offset_is_utc_and_as_of_accepts_offsets_postgres_refuses():
    assert as_utc(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    request = SearchRequest(user_id="ana", query="x", as_of="2026-01-01T20:00:00+20:00")
    assert request.as_of == datetime(2026, 1, 1, tzinfo=UTC)


def test_only_the_canonical_uuid_form_is_a_memory_id():
    memory_id = str(uuid.uuid4())
    assert canonical_uuid(memory_id) == memory_id and canonical_uuid(memory_id.upper()) == memory_id
    for other in (f"urn:uuid:{memory_id}", f"{{{memory_id}}}", memory_id.replace("-", ""), f" {memory_id}",
                  f"{memory_id}\n", None, 1):
        assert canonical_uuid(other) is None


@given(st.text(alphabet=st.characters(codec=None, categories=None)))
def test_model_text_is_made_storable(text):
    cleaned = storable_text(text)
    cleaned.encode("utf-8")  # no lone surrogate left
    assert not FORBIDDEN.search(cleaned)


def test_storable_text_keeps_what_it_can():
    assert storable_text("Porto\x00\ud800!") == "Porto\ufffd!"
    assert storable_text("\ud83d\ude00") == "\U0001f600"  # a surrogate pair is a character
    assert storable_value({"a\x00": ["b\udc00", {"c": 1}]}) == {"a": ["b\ufffd", {"c": 1}]}


@pytest.mark.parametrize("method,path,spends", [
    ("POST", "/v1/chat", True), ("POST", "/v1/memories/ask", True), ("POST", "/v1/memories/deep-query", True),
    ("POST", "/v1/users/<user_id>/narrative/regenerate", True), ("POST", "/v1/memories/search", False),
    ("GET", "/v1/memories", False), ("GET", "/v1/context", False), ("POST", "/mcp", False),
    ("POST", "/v1/turns", False),  # a turn recorded: the caller's model answered it
])
def test_the_routes_that_spend_model_calls(method, path, spends):
    assert limits.spends_model(method, path, {}) is spends


def test_adding_memories_spends_model_calls_when_it_learns():
    learn = AddMemoriesRequest(user_id="ana", messages=[{"content": "hi"}])
    assert limits.spends_model("POST", "/v1/memories", {"request": learn})
    as_given = learn.model_copy(update={"infer": False})
    assert not limits.spends_model("POST", "/v1/memories", {"request": as_given})
