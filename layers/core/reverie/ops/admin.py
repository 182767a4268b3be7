"""The admin function's actions, for operators: projects and their API keys, and every project's status.

The function has no HTTP route. It is invoked with lambda:InvokeFunction, so IAM is its auth; the `reverie`
command drives it, against `make dev` or a deployed stack. An event names its action; the answers:

    {"action": "project.create", "project_id": "acme", "name": "Acme"}   {project_id, key_id, api_key}
    {"action": "project.list"}                                           {projects: [{project_id, name,
                                                                                      created_at, keys}]}
    {"action": "key.create", "project_id": "acme", "name": "ci"}         {project_id, key_id, api_key}
    {"action": "key.list", "project_id": "acme"}                         {keys: [{key_id, prefix, name,
                                                                                  created_at, revoked_at}]}
    {"action": "key.revoke", "project_id": "acme", "key_id": "key_..."}  {revoked: bool, refused_within_s}
    {"action": "ops.status"}                                             every project's figures: queues, DLQs,
                                                                         outboxes, windows, failures, who waits

A key is shown once, when it is made; only its hash is stored. `keys` in a project's listing counts the keys
that still work. A revoked key is refused everywhere within `refused_within_s` seconds (revocation_bound_s).
A refusal (an unknown action, a missing or malformed field, an unknown project or key) is an answer,
{"error": {"code", "message"}}, never an exception out of the function.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reverie.domain.errors import Conflict, NotFound, ReverieError, ValidationFailed
from reverie.domain.fields import SAFE_ID_PATTERN
from reverie.ops import status
from reverie.platform.observability import logger
from reverie.store import projects
from reverie.store.db import Database

MAX_NAME_CHARS = 200
# How long API Gateway caches the authorizer's answer for one Authorization header: template.yaml's
# ReauthorizeEvery (tests/unit/test_template.py keeps the two equal).
GATEWAY_AUTH_CACHE_S = 60
FIRST_KEY_NAME = "first key"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)
_ID_RULE = "1 to 128 letters, digits or . _ : @ -, starting with a letter or digit"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Action:
    run: Callable[[Any, dict[str, Any]], dict[str, Any]]  # (the process's clients, the event's fields)
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


def handle(clients, event: Any) -> dict[str, Any]:
    """Run the event's action; a refusal is answered as {"error": {"code", "message"}}."""
    name = event.get("action") if isinstance(event, dict) else None
    try:
        action, fields = parse(event)
        answer = action.run(clients, fields)
    except ReverieError as exc:
        logger.info("admin action refused", extra={"action": str(name)[:64], "code": exc.code, "reason": exc.message})
        return {"error": {"code": exc.code, "message": exc.message}}
    logger.info("admin action done", extra={"action": name, "project_id": fields.get("project_id"),
                                            "key_id": answer.get("key_id") or fields.get("key_id")})
    return answer


def parse(event: Any) -> tuple[Action, dict[str, Any]]:
    """The action an event names and its fields, checked; ValidationFailed says what is wrong."""
    known = ", ".join(ACTIONS)
    if not isinstance(event, dict):
        raise ValidationFailed(f'the event must be a JSON object naming an action, e.g. {{"action": "project.list"}}; '
                               f"actions: {known}")
    name = event.get("action")
    if name is None:
        raise ValidationFailed(f"the event names no action; actions: {known}")
    if not isinstance(name, str) or name not in ACTIONS:
        raise ValidationFailed(f"unknown action {str(name)[:64]!r}; actions: {known}")
    action = ACTIONS[name]
    fields = {k: v for k, v in event.items() if k != "action"}
    unknown = sorted(set(fields) - set(action.required) - set(action.optional))
    if unknown:
        takes = ", ".join(action.required + action.optional) or "no fields"
        raise ValidationFailed(f"{name} does not take {', '.join(map(repr, unknown))} (it takes {takes})")
    for field in action.required:
        if fields.get(field) is None:
            raise ValidationFailed(f"{name} needs {field}")
    for field, value in fields.items():
        if field.endswith("_id"):
            _check_id(field, value)
        elif field == "name" and value is not None:
            _check_name(value)
    return action, fields


def _check_id(field: str, value: Any) -> None:
    if not isinstance(value, str) or not _SAFE_ID.match(value):
        shown = repr(value)[:80]
        raise ValidationFailed(f"{field} {shown} is not a valid id: use {_ID_RULE}")


def _check_name(value: Any) -> None:
    if not isinstance(value, str):
        raise ValidationFailed("name must be a string")
    if len(value) > MAX_NAME_CHARS:
        raise ValidationFailed(f"name must be at most {MAX_NAME_CHARS} characters")
    if _CONTROL.search(value):
        raise ValidationFailed("name must not contain control characters")


# ---------------------------------------------------------------- the actions
def create_project(clients, fields: dict[str, Any]) -> dict[str, Any]:
    project_id = fields["project_id"]
    key = projects.create_project_with_key(clients.db, project_id, fields.get("name") or None, key_name=FIRST_KEY_NAME)
    if key is None:
        raise Conflict(f"project {project_id!r} already exists and has keys: make another with key.create "
                       f"(`reverie key create {project_id}`)")
    return {"project_id": project_id, "key_id": key.key_id, "api_key": key.key}


def list_projects(clients, fields: dict[str, Any]) -> dict[str, Any]:
    return {"projects": [_json_row(row) for row in projects.list_projects(clients.db)]}


def create_key(clients, fields: dict[str, Any]) -> dict[str, Any]:
    project_id = _known_project(clients.db, fields["project_id"])
    key = projects.issue_key(clients.db, project_id, name=fields.get("name") or "")
    return {"project_id": project_id, "key_id": key.key_id, "api_key": key.key}


def list_keys(clients, fields: dict[str, Any]) -> dict[str, Any]:
    project_id = _known_project(clients.db, fields["project_id"])
    return {"keys": [_json_row(row) for row in projects.list_api_keys(clients.db, project_id)]}


def revoke_key(clients, fields: dict[str, Any]) -> dict[str, Any]:
    """Revoked at once in the store; a key checked just before keeps working until the caches in front forget it,
    which takes at most `refused_within_s` (revocation_bound_s)."""
    db = clients.db
    project_id, key_id = _known_project(db, fields["project_id"]), fields["key_id"]
    bound = revocation_bound_s(clients.settings)
    if projects.revoke_api_key(db, project_id, key_id):
        return {"revoked": True, "refused_within_s": bound}
    if not projects.key_exists(db, project_id, key_id):
        raise NotFound(f"project {project_id!r} has no key {key_id!r}: `reverie key list {project_id}` shows its keys")
    return {"revoked": False, "refused_within_s": bound}  # it was revoked before


def revocation_bound_s(settings) -> int:
    """How long a revoked key may still be accepted, at most: API Gateway caches the authorizer's answer for a key
    ReauthorizeEvery seconds (GATEWAY_AUTH_CACHE_S), and the authorizer caches the key's project AUTH_CACHE_TTL_S.
    An answer the gateway caches came from the authorizer's cache, filled before the revocation, so the two add
    up and no more: after that, every gateway asks an authorizer that asks the database."""
    return math.ceil(GATEWAY_AUTH_CACHE_S + settings.auth_cache_ttl_s)


def ops_status(clients, fields: dict[str, Any]) -> dict[str, Any]:
    """Every project's figures, for operators (a project's own are its GET /v1/status)."""
    return status.operator_status(clients)


def _known_project(db: Database, project_id: str) -> str:
    if not projects.project_exists(db, project_id):
        raise NotFound(f"no project {project_id!r}: create it with project.create (`reverie project create "
                       f"{project_id}`)")
    return project_id


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


ACTIONS: dict[str, Action] = {
    "project.create": Action(create_project, required=("project_id",), optional=("name",)),
    "project.list": Action(list_projects),
    "key.create": Action(create_key, required=("project_id",), optional=("name",)),
    "key.list": Action(list_keys, required=("project_id",)),
    "key.revoke": Action(revoke_key, required=("project_id", "key_id")),
    "ops.status": Action(ops_status),
}
