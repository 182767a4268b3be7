"""The admin function's actions on the real Postgres: projects and keys made, listed and revoked, and every
refusal an answer ({"error": ...}), never an exception out of the function."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from reverie.api.auth import KeyResolver
from reverie.domain.errors import Unauthorized
from reverie.ops.admin import handle
from reverie.store.projects import create_project
from tests.support.clients import Swapped
from tests.support.functions import load_function


def new_project_id() -> str:
    return "adm-" + secrets.token_hex(4)


def admin(clients, **event):
    return handle(clients, event)


def error_of(answer: dict) -> tuple[str, str]:
    assert set(answer) == {"error"}, answer
    return answer["error"]["code"], answer["error"]["message"]


def test_a_created_project_has_a_first_key_that_the_authorizer_accepts(clients):
    project_id = new_project_id()
    made = admin(clients, action="project.create", project_id=project_id, name="Acme")

    assert set(made) == {"project_id", "key_id", "api_key"}
    assert made["project_id"] == project_id and made["api_key"].startswith("rv_")
    assert KeyResolver(clients.db, ttl_s=0).project_for(made["api_key"]) == project_id
    listed = {p["project_id"]: p for p in admin(clients, action="project.list")["projects"]}
    assert listed[project_id]["name"] == "Acme" and listed[project_id]["keys"] == 1
    assert listed[project_id]["created_at"].endswith("+00:00")


def test_creating_a_project_that_has_keys_is_refused_and_writes_nothing(clients):
    project_id = new_project_id()
    admin(clients, action="project.create", project_id=project_id)

    code, message = error_of(admin(clients, action="project.create", project_id=project_id, name="Other"))
    assert code == "conflict"
    assert f"project {project_id!r} already exists" in message and f"reverie key create {project_id}" in message
    assert len(admin(clients, action="key.list", project_id=project_id)["keys"]) == 1


def test_a_project_left_without_keys_gets_its_first_key(clients):
    project_id = new_project_id()
    create_project(clients.db, project_id)  # e.g. made before keys were issued through the admin function

    made = admin(clients, action="project.create", project_id=project_id)
    assert made["project_id"] == project_id
    assert KeyResolver(clients.db, ttl_s=0).project_for(made["api_key"]) == project_id


def test_keys_are_listed_without_the_keys_themselves(clients):
    project_id = new_project_id()
    first = admin(clients, action="project.create", project_id=project_id)
    second = admin(clients, action="key.create", project_id=project_id, name="ci")

    keys = admin(clients, action="key.list", project_id=project_id)["keys"]
    assert [k["key_id"] for k in keys] == [first["key_id"], second["key_id"]]
    assert keys[1]["name"] == "ci" and keys[0]["name"] == "first key"
    assert set(keys[0]) == {"key_id", "prefix", "name", "created_at", "revoked_at"}
    assert second["api_key"].startswith(keys[1]["prefix"]) and keys[1]["revoked_at"] is None
    text = json.dumps(keys)
    assert first["api_key"] not in text and second["api_key"] not in text


def test_a_revoked_key_is_refused_once_the_resolver_cache_forgets_it(clients):
    project_id = new_project_id()
    made = admin(clients, action="project.create", project_id=project_id)
    other = admin(clients, action="key.create", project_id=project_id)
    resolver = KeyResolver(clients.db, ttl_s=0.5)
    assert resolver.project_for(made["api_key"]) == project_id  # now cached

    assert admin(clients, action="key.revoke", project_id=project_id, key_id=made["key_id"]) == {
        "revoked": True, "refused_within_s": 120}  # API Gateway's 60 s, then the authorizer's own 60 s
    assert resolver.project_for(made["api_key"]) == project_id  # still within the cache's time
    time.sleep(0.6)
    with pytest.raises(Unauthorized):
        resolver.project_for(made["api_key"])
    assert resolver.project_for(other["api_key"]) == project_id  # the project's other key still works

    keys = {k["key_id"]: k for k in admin(clients, action="key.list", project_id=project_id)["keys"]}
    assert keys[made["key_id"]]["revoked_at"] is not None
    listed = {p["project_id"]: p for p in admin(clients, action="project.list")["projects"]}
    assert listed[project_id]["keys"] == 1  # the keys that still work
    # revoking again changes nothing and says so
    assert admin(clients, action="key.revoke", project_id=project_id, key_id=made["key_id"])["revoked"] is False


def test_unknown_projects_and_keys_are_named(clients):
    project_id = new_project_id()
    for action in ("key.create", "key.list"):
        code, message = error_of(admin(clients, action=action, project_id=project_id))
        assert code == "not_found" and f"no project {project_id!r}" in message
        assert f"reverie project create {project_id}" in message
    admin(clients, action="project.create", project_id=project_id)
    code, message = error_of(admin(clients, action="key.revoke", project_id=project_id, key_id="key_000000000000"))
    assert code == "not_found" and "has no key 'key_000000000000'" in message


def test_a_key_of_another_project_cannot_be_revoked_through_this_one(clients):
    mine, theirs = new_project_id(), new_project_id()
    admin(clients, action="project.create", project_id=mine)
    their_key = admin(clients, action="project.create", project_id=theirs)

    code, _ = error_of(admin(clients, action="key.revoke", project_id=mine, key_id=their_key["key_id"]))
    assert code == "not_found"
    assert KeyResolver(clients.db, ttl_s=0).project_for(their_key["api_key"]) == theirs


@pytest.mark.parametrize(("event", "says"), [
    ("project.list", "must be a JSON object"),
    (["project.list"], "must be a JSON object"),
    ({}, "names no action"),
    ({"action": "project.delete"}, "unknown action 'project.delete'"),
    ({"action": 7}, "unknown action '7'"),
    ({"action": "key.list"}, "key.list needs project_id"),
    ({"action": "key.revoke", "project_id": "acme"}, "key.revoke needs key_id"),
    ({"action": "project.create", "project_id": "bad id!"}, "project_id 'bad id!' is not a valid id"),
    ({"action": "project.create", "project_id": ""}, "is not a valid id"),
    ({"action": "project.create", "project_id": "x" * 129}, "is not a valid id"),
    ({"action": "project.create", "project_id": 42}, "project_id 42 is not a valid id"),
    ({"action": "key.revoke", "project_id": "acme", "key_id": "../key"}, "key_id '../key' is not a valid id"),
    ({"action": "project.create", "project_id": "acme", "name": "x" * 201}, "at most 200 characters"),
    ({"action": "project.create", "project_id": "acme", "name": "a\nb"}, "control characters"),
    ({"action": "key.list", "project": "acme"}, "key.list does not take 'project' (it takes project_id)"),
])
def test_bad_input_is_answered_with_a_validation_error(clients, event, says):
    code, message = error_of(handle(clients, event))
    assert code == "validation_error"
    assert says in message
    assert "\n" not in message


def test_the_function_answers_refusals_and_never_raises(clients, lambda_context):
    handler = load_function("AdminFunction")
    code, message = error_of(handler({"action": "nope"}, lambda_context))
    assert code == "validation_error" and "project.create" in message  # the actions are listed
    down = Swapped(clients, postgres_down=True)
    try:
        code, _ = error_of(handle(down, {"action": "project.list"}))
    finally:
        down.close()
    assert code == "unavailable"
