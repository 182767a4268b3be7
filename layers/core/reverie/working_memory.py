"""Tier 1, working memory: the recent turns of one session, a capped Valkey list with a TTL.

Losing it degrades recall of the last few turns and nothing else: every turn also travels in its job.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from reverie.models import Turn
from reverie.observability import logger

PREFIX = "wm"


def escape(part: str) -> str:
    """Key parts may contain ':' (it is in the id charset); escaping it keeps `wm:{p}:{u}:*` from also
    matching user "u:x". '%' is escaped first so the mapping stays one-to-one."""
    return part.replace("%", "%25").replace(":", "%3A")


def _glob(part: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", part)


def session_key(project_id: str, user_id: str, session_id: str) -> str:
    return f"{PREFIX}:{escape(project_id)}:{escape(user_id)}:{escape(session_id)}"


def user_pattern(project_id: str, user_id: str) -> str:
    """The SCAN pattern of every tier-1 key of one user."""
    return f"{PREFIX}:{_glob(escape(project_id))}:{_glob(escape(user_id))}:*"


def recent_turns(valkey, project_id: str, user_id: str, session_id: str, limit: int) -> list[Turn]:
    """The newest `limit` turns of the session, oldest first."""
    if limit <= 0:
        return []
    raw = valkey.lrange(session_key(project_id, user_id, session_id), -limit, -1)
    return parse_turns(raw)


def parse_turns(raw: list[bytes | str]) -> list[Turn]:
    turns = []
    for item in raw:
        try:
            turns.append(Turn.model_validate_json(item))
        except ValidationError:
            # One unreadable entry (an older format, a hand edit) must not cost the rest of the session.
            logger.warning("unreadable tier-1 turn skipped")
    return turns


def append_turns(
    pipe_or_valkey, project_id: str, user_id: str, session_id: str, turns: list[Turn], max_turns: int, ttl_s: int,
) -> None:
    """Queue RPUSH + LTRIM + EXPIRE on a pipeline (or send them, given a client): the list keeps the newest
    `max_turns` and lives `ttl_s` after the last turn."""
    if not turns:
        return
    key = session_key(project_id, user_id, session_id)
    pipe_or_valkey.rpush(key, *[t.model_dump_json() for t in turns])
    pipe_or_valkey.ltrim(key, -max_turns, -1)
    pipe_or_valkey.expire(key, ttl_s)


def forget_user(valkey, project_id: str, user_id: str) -> int:
    """Delete every tier-1 key of the user, the user's parked jobs and remembered chat answers.

    Returns how many keys were deleted."""
    from reverie import idempotency, outbox

    deleted = 0
    for pattern in (user_pattern(project_id, user_id), idempotency.user_pattern(project_id, user_id)):
        batch: list[bytes] = []
        for key in valkey.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += valkey.delete(*batch)
                batch = []
        if batch:
            deleted += valkey.delete(*batch)
    deleted += outbox.forget_user(valkey, project_id, user_id)
    return deleted
