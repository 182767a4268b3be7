"""The narrative in Valkey: its hot copy, and the guard that keeps one generation job pending per user.

The hot copy is what the chat and `/v1/context` read instead of Postgres: the user's newest narrative version as
JSON. The narrative worker writes it when it writes a version; a miss is filled from Postgres (only if still
absent, so a fill never overwrites a newer version); a forget deletes it with the user's other keys. A miss that
finds no narrative in Postgres leaves a mark saying so for NONE_TTL_S (also only if still absent), so the turns of a
user without one do not each ask Postgres; the worker's first version replaces it.

A deleted memory takes the narratives that quote it, so its delete marks the copy `dropped` for a while: readers go
to Postgres and do not fill, so a fill that read Postgres before the delete cannot put the deleted words back.

The guard holds the id of the user's pending narrative job: a second request finds it and names that job instead
of queueing another. The worker releases it when the job is finished (done, empty, or dead); it expires after
longer than a job's retries can take, so a lost job cannot hold it for ever.

Both are keys of the user (one hash slot); the writes that a forget may overtake go through `users.UserWrites`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from reverie.cache import keys

# A job's retries take up to 5 receives x the narrative queue's visibility timeout (1800 s): 2.5 hours.
PENDING_TTL_S = 3 * 3600
# How long a hot copy lives unread-through: it is refreshed by every new version, so this only bounds what an
# inactive user keeps in memory (and how long a copy the worker failed to refresh can lag).
HOT_TTL_S = 3600
# How long a delete keeps fills away (longer than any request that read Postgres before it can take).
DROPPED_TTL_S = 60
# How long "no narrative" is believed: the worker's version replaces the mark at once, so this only bounds how long
# a version whose copy could not be written (Valkey down at the time) stays unseen.
NONE_TTL_S = 300

# Deletes the guard only when it still names this job (a later job may hold it by now).
_RELEASE_IF_MINE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class State(Enum):
    MISS = "miss"  # no copy: read Postgres and fill
    DROPPED = "dropped"  # a memory it quoted was deleted lately: read Postgres, do not fill
    NONE = "none"  # the user had no narrative when Postgres was last asked (NONE_TTL_S ago at most)
    FOUND = "found"


@dataclass(frozen=True)
class Hot:
    state: State
    narrative: dict[str, Any] | None = None  # FOUND: {text, version, generated_at, citations}


# The copy as a reader takes it when Valkey cannot be read: Postgres answers, and nothing is filled.
UNREADABLE = Hot(State.DROPPED)


def read(valkey, project_id: str, user_id: str) -> Hot:
    return parse(valkey.get(keys.narrative(project_id, user_id)))


def parse(raw: bytes | str | None) -> Hot:
    """The copy as read (None when there is no key)."""
    if raw is None:
        return Hot(State.MISS)
    try:
        value = json.loads(raw)
    except ValueError:
        return Hot(State.MISS)
    if not isinstance(value, dict) or value.get("version") is None:
        if isinstance(value, dict) and value.get("dropped"):
            return Hot(State.DROPPED)
        return Hot(State.NONE if isinstance(value, dict) and value.get("none") else State.MISS)
    return Hot(State.FOUND, {"text": value["text"], "version": int(value["version"]),
                             "generated_at": datetime.fromisoformat(value["generated_at"]),
                             "citations": [str(c) for c in value.get("citations") or []]})


def encode(narrative: dict[str, Any]) -> str:
    """A narrative row (store.narratives.latest's shape) as the copy holds it."""
    return json.dumps({"text": narrative["text"], "version": narrative["version"],
                       "generated_at": narrative["generated_at"].isoformat(),
                       "citations": [str(c) for c in narrative.get("citations") or []]})


def write(writes, project_id: str, user_id: str, narrative: dict[str, Any], *, fill: bool) -> None:
    """Add the copy to `writes` (a users.UserWrites): a fill only if there is none (a newer version or a delete's
    mark may be there already), the worker's new version over whatever is there."""
    writes.set(keys.narrative(project_id, user_id), encode(narrative), ex=HOT_TTL_S, nx=fill)


def write_none(writes, project_id: str, user_id: str) -> None:
    """Add the "no narrative" mark to `writes`, only if there is no copy (a version may have been written since
    Postgres was asked)."""
    writes.set(keys.narrative(project_id, user_id), json.dumps({"none": True}), ex=NONE_TTL_S, nx=True)


def drop(writes, project_id: str, user_id: str) -> None:
    """Mark the copy dropped (see the module docstring), over whatever is there."""
    writes.set(keys.narrative(project_id, user_id), json.dumps({"dropped": True}), ex=DROPPED_TTL_S)


# ---------------------------------------------------------------- the guard


def claim(writes, project_id: str, user_id: str, job_id: str) -> None:
    """Add the claim to `writes`: its result is true when this job is now the pending one, None when another is."""
    writes.set(keys.narrative_pending(project_id, user_id), job_id, nx=True, ex=PENDING_TTL_S)


def pending(valkey, project_id: str, user_id: str) -> str | None:
    """The id of the user's pending narrative job, if there is one."""
    raw = valkey.get(keys.narrative_pending(project_id, user_id))
    return raw.decode() if isinstance(raw, bytes) else raw


def release(valkey, project_id: str, user_id: str, job_id: str) -> bool:
    """Let the next request queue a job, if the guard still names this one."""
    return bool(valkey.eval(_RELEASE_IF_MINE, 1, keys.narrative_pending(project_id, user_id), job_id))
