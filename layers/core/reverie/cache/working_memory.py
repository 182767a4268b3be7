"""Tier 1, working memory: the recent turns of one session, a capped Valkey list with a TTL.

Losing it degrades recall of the last few turns and nothing else: every turn also travels in its job.
"""

from __future__ import annotations

from pydantic import ValidationError

from reverie.cache import keys
from reverie.domain.memory import Turn
from reverie.platform.observability import logger


def recent_turns(valkey, project_id: str, user_id: str, session_id: str, limit: int) -> list[Turn]:
    """The newest `limit` turns of the session, oldest first."""
    if limit <= 0:
        return []
    raw = valkey.lrange(keys.session(project_id, user_id, session_id), -limit, -1)
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
    `max_turns` and lives `ttl_s` after the last turn. The session joins the user's session set, which lives as
    long as the newest session (so an export or a forget finds every session without a scan)."""
    if not turns:
        return
    key = keys.session(project_id, user_id, session_id)
    pipe_or_valkey.rpush(key, *[t.model_dump_json() for t in turns])
    pipe_or_valkey.ltrim(key, -max_turns, -1)
    pipe_or_valkey.expire(key, ttl_s)
    index = keys.sessions(project_id, user_id)
    pipe_or_valkey.sadd(index, session_id)
    pipe_or_valkey.expire(index, ttl_s)


def sessions(valkey, project_id: str, user_id: str) -> dict[str, list[Turn]]:
    """Every session of the user still in tier 1: session id -> its turns, oldest first (one round trip for
    the set, one for the lists; all in the user's slot)."""
    ids = sorted(i.decode() if isinstance(i, bytes) else i for i in valkey.smembers(keys.sessions(project_id, user_id)))
    if not ids:
        return {}
    pipe = valkey.pipeline(transaction=False)
    for session_id in ids:
        pipe.lrange(keys.session(project_id, user_id, session_id), 0, -1)
    found = {session_id: parse_turns(raw) for session_id, raw in zip(ids, pipe.execute(), strict=True)}
    return {session_id: turns for session_id, turns in found.items() if turns}  # expired lists leave the set late
