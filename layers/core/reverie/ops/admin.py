"""The admin function's actions, for operators: projects and their API keys, every project's status, and
backfills (conversations held before Reverie was, and narratives for the users they made).

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
    {"action": "backfill.conversations", "project_id": "acme",           {results: [{user_id, session_id, turns,
     "conversations": [{user_id, session_id, turns, metadata?}],           jobs, published, skipped, failed,
     "include_forgotten": false}                                            errors}], done}
    {"action": "backfill.narratives", "project_id": "acme",              {users, queued, pending, current,
     "min_memories": 5, "after_user_id": null, "limit": 200,               total?, next_after_user_id}
     "all": false}
    {"action": "embeddings.reembed", "project_id": "acme",               {model, reembedded, remaining, next_after}
     "after": 0, "batch": 100}

A backfill sends a batch of conversations (reverie.jobs.backfill): their jobs are published in order, those
published before skipped; `done` says how many were handled within the invocation's time, and the caller sends
the rest again. backfill.narratives queues a narrative job for each user with at least `min_memories` current
memories whose narrative is missing or older than their memories (`current` counts the others; `all` queues theirs
too), one pending per user (a user with a job pending counts as pending), a page of users at a time.
embeddings.reembed embeds the project's memories again with the current embedding model (reverie.ops.reembed),
from `after` on, within the invocation's time; `next_after` continues it (null: the walk is over).

A key is shown once, when it is made; only its hash is stored. `keys` in a project's listing counts the keys
that still work. A revoked key is refused everywhere within `refused_within_s` seconds (revocation_bound_s).
A refusal (an unknown action, a missing or malformed field, an unknown project or key) is an answer,
{"error": {"code", "message"}}, never an exception out of the function.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reverie.domain.errors import Conflict, NotFound, ReverieError, UserForgotten, ValidationFailed
from reverie.domain.fields import SAFE_ID_PATTERN
from reverie.jobs import backfill
from reverie.jobs import narratives as narrative_jobs
from reverie.ops import reembed, status
from reverie.platform.observability import logger
from reverie.store import narratives, projects
from reverie.store.db import Database

MAX_NAME_CHARS = 200
# A backfill's share of the function's 30 s: what it has not reached by then, the caller sends again.
BACKFILL_BUDGET_S = 20.0
MAX_BACKFILL_CONVERSATIONS = 500
NARRATIVE_MIN_MEMORIES = 5
NARRATIVE_PAGE = 200
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


def backfill_conversations(clients, fields: dict[str, Any]) -> dict[str, Any]:
    """Publish a batch of conversations' jobs, in order, within BACKFILL_BUDGET_S: `done` of them are answered, and
    the caller sends the rest again. A conversation that is not valid is answered with why and counts as failed."""
    project_id = _known_project(clients.db, fields["project_id"])
    conversations = fields["conversations"]
    if not isinstance(conversations, list) or not conversations:
        raise ValidationFailed("conversations must be a non-empty list of conversations")
    if len(conversations) > MAX_BACKFILL_CONVERSATIONS:
        raise ValidationFailed(f"send at most {MAX_BACKFILL_CONVERSATIONS} conversations at a time")
    include_forgotten = _flag(fields, "include_forgotten")
    started = time.monotonic()
    results = []
    for data in conversations:
        if results and time.monotonic() - started > BACKFILL_BUDGET_S:
            break
        try:
            conversation = backfill.read_conversation(data)
        except ValidationFailed as exc:
            results.append(_invalid(data, exc.message))
            continue
        results.append(backfill.import_conversation(clients, project_id, conversation,
                                                    include_forgotten=include_forgotten).as_dict())
    return {"results": results, "done": len(results)}


def _invalid(data: Any, reason: str) -> dict[str, Any]:
    data = data if isinstance(data, dict) else {}
    named = {k: v if isinstance(v, str) and _SAFE_ID.match(v) else None
             for k, v in (("user_id", data.get("user_id")), ("session_id", data.get("session_id")))}
    turns = data.get("turns")
    return {**named, "turns": len(turns) if isinstance(turns, list) else 0, "jobs": 0, "published": 0, "skipped": 0,
            "failed": 0, "invalid": True, "errors": [f"not a valid conversation: {reason}"[:500]]}


def backfill_narratives(clients, fields: dict[str, Any]) -> dict[str, Any]:
    """Queue a narrative job for each user of the project with at least `min_memories` current memories and no
    narrative written since they last changed (any narrative with `all`), a page of users at a time (after
    `after_user_id`), within BACKFILL_BUDGET_S; `next_after_user_id` continues it."""
    project_id = _known_project(clients.db, fields["project_id"])
    min_memories = _count(fields, "min_memories", NARRATIVE_MIN_MEMORIES, 1, 1_000_000)
    limit = _count(fields, "limit", NARRATIVE_PAGE, 1, 1000)
    after = fields.get("after_user_id")
    total = None if after else narratives.count_users_with_memories(clients.db, project_id, min_memories=min_memories)
    rows = narratives.users_with_memories(clients.db, project_id, min_memories=min_memories, after=after, limit=limit)
    everyone = _flag(fields, "all")
    started = time.monotonic()
    queued = pending = forgotten = current = 0
    last = None
    for row in rows:
        if last is not None and time.monotonic() - started > BACKFILL_BUDGET_S:
            break
        if not everyone and row["narrative_at"] is not None and row["narrative_at"] >= row["learned_at"]:
            current += 1  # written after their memories last changed: nothing new to say
            last = row["user_id"]
            continue
        try:
            asked = narrative_jobs.request(clients, project_id, row["user_id"], "backfill")
        except UserForgotten:
            forgotten += 1
        else:
            queued += bool(asked and asked.queued)
            pending += bool(asked and not asked.queued)
        last = row["user_id"]
    more = last is not None and (last != rows[-1]["user_id"] or len(rows) == limit)
    return {"users": queued + pending + forgotten + current, "queued": queued, "pending": pending,
            "current": current, "total": total, "next_after_user_id": last if more else None}


def reembed_memories(clients, fields: dict[str, Any]) -> dict[str, Any]:
    """Embed the project's memories of another model again, from `after` on, within BACKFILL_BUDGET_S."""
    project_id = _known_project(clients.db, fields["project_id"])
    batch = _count(fields, "batch", reembed.BATCH, 1, 1000)
    after = _count(fields, "after", 0, 0, 2**62)
    return reembed.reembed(clients, project_id, after=after, batch=batch, budget_s=BACKFILL_BUDGET_S).as_dict()


def _flag(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name, False)
    if not isinstance(value, bool):
        raise ValidationFailed(f"{name} must be true or false")
    return value


def _count(fields: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValidationFailed(f"{name} must be a whole number from {low} to {high}")
    return value


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
    "backfill.conversations": Action(backfill_conversations, required=("project_id", "conversations"),
                                     optional=("include_forgotten",)),
    "backfill.narratives": Action(backfill_narratives, required=("project_id",),
                                  optional=("min_memories", "after_user_id", "limit", "all")),
    "embeddings.reembed": Action(reembed_memories, required=("project_id",), optional=("after", "batch")),
}
