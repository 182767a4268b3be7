"""Every Valkey key Reverie writes, built here and nowhere else, with one escaping rule.

ElastiCache Serverless is a cluster: a command over several keys must find them in one hash slot. So every
key of one user carries the same hash tag, `{<project>:<user>}`, and a user's multi-key work (the chat's
round trip, the outbox's scripts, a forget's DEL) stays in one slot. What a user has is found through the
user's own index keys (the session set, the idempotency-record set), never by scanning the keyspace.

Ids may contain ':' (it is in the id charset), so every id part is escaped: ':' becomes '%3A' and '%'
becomes '%25' ('%' first, so the mapping stays one-to-one). Ids never contain '{' or '}', so a tag ends
where the user's part does.
"""

from __future__ import annotations

import zlib

# The outbox index is sharded, so no single slot takes a write for every chat turn of every tenant.
OUTBOX_INDEX_SHARDS = 16
JOB_MARKER = "job"
FORGET_RECEIPT = "forget"
BACKLOG_SINCE = "health:backlog-since"
RATE_LIMIT = "rate"


def escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


def unescape(part: str) -> str:
    return part.replace("%3A", ":").replace("%25", "%")


def user_tag(project_id: str, user_id: str) -> str:
    """The hash tag every key of one user carries."""
    return "{" + escape(project_id) + ":" + escape(user_id) + "}"


def owner_of(key: str) -> tuple[str, str]:
    """(project_id, user_id) of any key of a user (read back from its hash tag)."""
    tag = key[key.index("{") + 1:key.index("}")]
    project, user = tag.split(":")
    return unescape(project), unescape(user)


# ---------------------------------------------------------------- one user's keys


def session(project_id: str, user_id: str, session_id: str) -> str:
    """The list of one session's recent turns."""
    return f"wm:{user_tag(project_id, user_id)}:{escape(session_id)}"


def sessions(project_id: str, user_id: str) -> str:
    """The set of the user's session ids still in tier 1."""
    return f"sessions:{user_tag(project_id, user_id)}"


def user_jobs(project_id: str, user_id: str) -> str:
    """The set of the user's marked job ids, so a forget finds the markers without scanning."""
    return f"jobs:{user_tag(project_id, user_id)}"


def idempotency_prefix(project_id: str, user_id: str) -> str:
    """Powertools' key prefix for the user's remembered answers, the chat's and a recorded turn's (it appends '#' and
    a hash)."""
    return f"idem:{user_tag(project_id, user_id)}"


def idempotency_records(project_id: str, user_id: str) -> str:
    """The set of the user's remembered-answer keys (they hold reply text, so a forget removes them)."""
    return f"idem-keys:{user_tag(project_id, user_id)}"


def outbox(project_id: str, user_id: str) -> str:
    """The hash of the user's parked jobs: job id -> job."""
    return f"outbox:{user_tag(project_id, user_id)}"


def outbox_claims(project_id: str, user_id: str) -> str:
    """The hash of the drainers' claims on the user's parked jobs: job id -> when claimed."""
    return f"outbox-claims:{user_tag(project_id, user_id)}"


def pending_turns(project_id: str, user_id: str) -> str:
    """The list of what the user said (across sessions) that the tiers may not have learned yet (cache.pending)."""
    return f"said:{user_tag(project_id, user_id)}"


def narrative_pending(project_id: str, user_id: str) -> str:
    """The narrative guard: the id of the user's one narrative job still pending (reverie.cache.narratives)."""
    return f"narrative-pending:{user_tag(project_id, user_id)}"


def narrative(project_id: str, user_id: str) -> str:
    """The hot copy of the user's newest narrative, read before Postgres (reverie.cache.narratives)."""
    return f"narrative:{user_tag(project_id, user_id)}"


def forgotten(project_id: str, user_id: str) -> str:
    """When the user was last forgotten (epoch seconds): writes of work begun before it are refused."""
    return f"forgotten:{user_tag(project_id, user_id)}"


def fixed_user_keys(project_id: str, user_id: str) -> list[str]:
    """The user's keys whose names do not depend on a session or a record: a forget deletes them all."""
    return [sessions(project_id, user_id), user_jobs(project_id, user_id),
            idempotency_records(project_id, user_id), outbox(project_id, user_id),
            outbox_claims(project_id, user_id), narrative_pending(project_id, user_id),
            pending_turns(project_id, user_id),
            narrative(project_id, user_id)]


# ---------------------------------------------------------------- keys of no one user


def job_marker(project_id: str, job_id: str) -> str:
    """A job's marker: read by job id alone (the status API is not told the user), so it has its own slot."""
    return f"{JOB_MARKER}:{escape(project_id)}:{escape(job_id)}"


def forget_receipt(project_id: str, job_id: str) -> str:
    return f"{FORGET_RECEIPT}:{escape(project_id)}:{escape(job_id)}"


def outbox_index(shard: int) -> str:
    """One shard of the index of users with parked jobs (a sorted set: user outbox key -> oldest parked at)."""
    return f"outbox-index:{{{shard}}}"


def outbox_index_of(project_id: str, user_id: str) -> str:
    """The index shard a user's outbox is listed in."""
    return outbox_index(zlib.crc32(user_tag(project_id, user_id).encode()) % OUTBOX_INDEX_SHARDS)


def project_outboxes(project_id: str) -> str:
    """A glob matching the outbox keys of one project's users (as listed in the index): the project starts the
    hash tag, and escaped ids hold none of the glob's special characters (* ? [ ] \\)."""
    return "outbox:{" + escape(project_id) + ":*"


def rate_limit(project_id: str, budget: str, window: int) -> str:
    """A project's count of requests in one budget ("requests", "model") and fixed window (the window's number
    since the epoch). Its own key, counted by single-key commands: nothing spans slots."""
    return f"{RATE_LIMIT}:{escape(project_id)}:{budget}:{window}"


def backlog_since(tier: str) -> str:
    """When the health probe first saw a tier's queue hold jobs (for stall detection)."""
    return f"{BACKLOG_SINCE}:{tier}"
