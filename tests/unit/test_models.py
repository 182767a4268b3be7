"""Models at the boundary: scope is required, the project never comes from a body, limits hold."""

import pytest
from pydantic import ValidationError

from reverie.chat.schemas import ChatRequest
from reverie.domain.errors import InvalidJob
from reverie.domain.fields import MAX_MESSAGE_BYTES
from reverie.domain.memory import Turn
from reverie.jobs.message import ReflectionJob, encode, make_job, parse_job


def _turns():
    return [Turn(role="user", content="I live in Porto")]


def test_job_without_project_is_refused_by_the_producer():
    with pytest.raises(InvalidJob) as exc:
        make_job(project_id="", user_id="ana", session_id="s1", turns=_turns())
    assert "project_id" in exc.value.message or "project_id" in str(exc.value.details)


def test_job_without_project_is_refused_by_the_consumer():
    body = make_job(project_id="p1", user_id="ana", session_id="s1", turns=_turns()).model_dump()
    del body["project_id"]
    with pytest.raises(InvalidJob) as exc:
        parse_job(body)
    assert "missing project_id" in exc.value.message


def test_job_without_user_is_refused_by_the_consumer():
    body = make_job(project_id="p1", user_id="ana", session_id="s1", turns=_turns()).model_dump()
    body["user_id"] = None
    with pytest.raises(InvalidJob):
        parse_job(body)


def test_consumer_refuses_bodies_that_are_not_jobs():
    for body in ("not json", "[1, 2]", "{}"):
        with pytest.raises(InvalidJob):
            parse_job(body)


def test_producer_cannot_send_a_job_built_around_validation():
    job = ReflectionJob.model_construct(job_id="j1", user_id="ana", session_id="s", turns=_turns())
    with pytest.raises((InvalidJob, ValueError, AttributeError)):
        encode(job)


def test_job_round_trips_and_groups_by_project_and_user():
    job = make_job(project_id="p1", user_id="ana", session_id="s1", turns=_turns())
    again = parse_job(encode(job))
    assert again == job
    assert job.group_id == "p1:ana"


def test_chat_request_refuses_a_project_in_the_body():
    with pytest.raises(ValidationError) as exc:
        ChatRequest.model_validate({"project": "other", "user_id": "u", "session_id": "s", "message": "hi"})
    assert "API key" in str(exc.value)


@pytest.mark.parametrize("field,value", [("user_id", "has space"), ("user_id", "x" * 200),
                                         ("session_id", "../etc"), ("message", ""),
                                         ("message", "a" * (MAX_MESSAGE_BYTES + 1))])
def test_chat_request_limits(field, value):
    data = {"user_id": "u1", "session_id": "s1", "message": "hello", field: value}
    with pytest.raises(ValidationError):
        ChatRequest.model_validate(data)


def test_chat_request_metadata_limit():
    with pytest.raises(ValidationError):
        ChatRequest.model_validate({"user_id": "u", "session_id": "s", "message": "m",
                                    "metadata": {"blob": "x" * 5000}})
    ok = ChatRequest.model_validate({"user_id": "u", "session_id": "s", "message": "m", "metadata": {"a": 1}})
    assert ok.metadata == {"a": 1}


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError):
        ChatRequest.model_validate({"user_id": "u", "session_id": "s", "message": "m", "mesage": "typo"})
