"""What the user said that the tiers may not have learned yet: one capped Valkey list per user, across sessions.

Tier 1 holds one session; the tiers learn a job seconds to minutes after it was said (its reflection window). So
that recall is never less fresh than what the user just said, each user turn of a job is also appended here in the
round trip that parks the job (the chat's, and the memory API's), as a small entry: the job, the turn, the session,
when and what was said. Recall reads the list, leaves out the jobs every tier has learned (reverie.chat.recall), and
removes those from it. The list keeps the newest `pending_max_turns` entries and lives `pending_ttl_s` after the
user's last turn; it is one of the user's keys (reverie.cache.keys), in the user's slot, deleted by a forget.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from pydantic import ValidationError

from reverie.cache import keys
from reverie.domain.memory import PendingTurn
from reverie.platform.observability import logger

# What one entry keeps of a turn: recall shows a few sentences of it at most.
MAX_TEXT_CHARS = 1000


def entries(job) -> list[str]:
    """A job's user turns as list entries (what the user said is what the tiers learn from)."""
    return [json.dumps({"job": job.job_id, "turn": turn.turn_id, "session": job.session_id,
                        "at": turn.created_at.isoformat(), "text": _clip(turn.content)}, ensure_ascii=False)
            for turn in job.turns if turn.role == "user" and turn.content.strip()]


def remember(pipe_or_writes, job, max_turns: int, ttl_s: int) -> None:
    """Queue RPUSH + LTRIM + EXPIRE of the job's user turns on a pipeline (or a reverie.cache.users.UserWrites):
    the list keeps the newest `max_turns` and lives `ttl_s` after the last."""
    said = entries(job)
    if not said or max_turns <= 0:
        return
    key = keys.pending_turns(job.project_id, job.user_id)
    pipe_or_writes.rpush(key, *said)
    pipe_or_writes.ltrim(key, -max_turns, -1)
    pipe_or_writes.expire(key, ttl_s)


def read(valkey, project_id: str, user_id: str) -> list[tuple[bytes | str, PendingTurn]]:
    """The user's entries, oldest first: (the entry as stored, the turn). An unreadable one is skipped."""
    return parse(valkey.lrange(keys.pending_turns(project_id, user_id), 0, -1))


def parse(raws: Sequence[bytes | str]) -> list[tuple[bytes | str, PendingTurn]]:
    """The list's entries as read (`read`'s answer)."""
    found = []
    for raw in raws:
        try:
            data = json.loads(raw)
            found.append((raw, PendingTurn(job_id=data["job"], turn_id=data["turn"], session_id=data["session"],
                                           said_at=datetime.fromisoformat(data["at"]), text=data["text"])))
        except (ValueError, KeyError, TypeError, ValidationError):
            logger.warning("unreadable pending turn skipped")
    return found


def drop(valkey, project_id: str, user_id: str, raws: Sequence[bytes | str]) -> None:
    """Remove these entries (as read): their jobs are learned. One key, so one slot; removing what a forget
    already deleted writes nothing."""
    if not raws:
        return
    key = keys.pending_turns(project_id, user_id)
    pipe = valkey.pipeline(transaction=False)
    for raw in raws:
        pipe.lrem(key, 0, raw)
    pipe.execute()


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 1].rstrip() + "…"
