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
    `max_turns` and lives `ttl_s` after the last turn."""
    if not turns:
        return
    key = keys.session(project_id, user_id, session_id)
    pipe_or_valkey.rpush(key, *[t.model_dump_json() for t in turns])
    pipe_or_valkey.ltrim(key, -max_turns, -1)
    pipe_or_valkey.expire(key, ttl_s)


def sessions(valkey, project_id: str, user_id: str) -> dict[str, list[Turn]]:
    """Every session of the user still in tier 1: session id -> its turns, oldest first."""
    found = {}
    for key in sorted(valkey.scan_iter(match=keys.sessions_pattern(project_id, user_id), count=500)):
        key = key.decode() if isinstance(key, bytes) else key
        found[keys.session_id_of(key, project_id, user_id)] = parse_turns(valkey.lrange(key, 0, -1))
    return found


def forget_user(valkey, project_id: str, user_id: str) -> int:
    """Delete every session list of the user; returns how many keys went."""
    return delete_matching(valkey, keys.sessions_pattern(project_id, user_id))


def delete_matching(valkey, pattern: str) -> int:
    """Delete the keys a SCAN pattern matches, a page at a time; returns how many went."""
    deleted = 0
    batch: list[bytes] = []
    for key in valkey.scan_iter(match=pattern, count=500):
        batch.append(key)
        if len(batch) >= 500:
            deleted += valkey.delete(*batch)
            batch = []
    if batch:
        deleted += valkey.delete(*batch)
    return deleted
