"""Every Valkey key Reverie writes, built here and nowhere else, with one escaping rule.

Ids may contain ':' (it is in the id charset), so every id part is escaped: ':' becomes '%3A' and '%'
becomes '%25' ('%' first, so the mapping stays one-to-one). Then `wm:{p}:{u}:*` can never also match
user "u:x", and a key can be read back into its parts.
"""

from __future__ import annotations

import re

WORKING_MEMORY = "wm"
JOB_MARKER = "job"
USER_JOBS = "jobs"
IDEMPOTENCY = "idem"
NARRATIVE_PENDING = "narrative-pending"
FORGET_RECEIPT = "forget"
BACKLOG_SINCE = "health:backlog-since"
# One hash tag for every outbox key: they share a slot, so the outbox's scripts stay valid on a cluster.
OUTBOX_TAG = "{outbox}"
OUTBOX_INDEX = f"{OUTBOX_TAG}:users"  # sorted set: a user's outbox key -> when its oldest job was parked


def escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


def unescape(part: str) -> str:
    return part.replace("%3A", ":").replace("%25", "%")


def _glob(part: str) -> str:
    """A literal for a SCAN pattern: glob characters matched as themselves."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", part)


def _join(*parts: str) -> str:
    return ":".join(parts[:1] + tuple(escape(p) for p in parts[1:]))


# ---------------------------------------------------------------- tier 1


def session(project_id: str, user_id: str, session_id: str) -> str:
    """The list of one session's recent turns."""
    return _join(WORKING_MEMORY, project_id, user_id, session_id)


def sessions_pattern(project_id: str, user_id: str) -> str:
    """The SCAN pattern of every session list of one user."""
    return f"{WORKING_MEMORY}:{_glob(escape(project_id))}:{_glob(escape(user_id))}:*"


def session_id_of(key: str, project_id: str, user_id: str) -> str:
    """The session id a session key was built from."""
    return unescape(key[len(session(project_id, user_id, "")):])


# ---------------------------------------------------------------- job markers and receipts


def job_marker(project_id: str, job_id: str) -> str:
    return _join(JOB_MARKER, project_id, job_id)


def user_jobs(project_id: str, user_id: str) -> str:
    """The set of one user's marked job ids, so a forget finds them without scanning the project."""
    return _join(USER_JOBS, project_id, user_id)


def forget_receipt(project_id: str, job_id: str) -> str:
    return _join(FORGET_RECEIPT, project_id, job_id)


# ---------------------------------------------------------------- the outbox


def outbox(project_id: str, user_id: str) -> str:
    """The hash of one user's parked jobs: job id -> job."""
    return f"{OUTBOX_TAG}:{escape(project_id)}:{escape(user_id)}"


def outbox_claims(project_id: str, user_id: str) -> str:
    """The hash of the drainers' claims on one user's parked jobs: job id -> when claimed."""
    return outbox(project_id, user_id) + ":claims"


def outbox_owner(key: str) -> tuple[str, str]:
    """(project_id, user_id) of a user's outbox key."""
    _, project, user = key.split(":")
    return unescape(project), unescape(user)


# ---------------------------------------------------------------- other stages' guards


def idempotency_prefix(project_id: str, user_id: str) -> str:
    """Powertools' key prefix for one user's remembered chat answers (it appends '#' and a hash)."""
    return _join(IDEMPOTENCY, project_id, user_id)


def idempotency_pattern(project_id: str, user_id: str) -> str:
    """The SCAN pattern of one user's remembered answers (they hold reply text, so a forget removes them)."""
    return _glob(idempotency_prefix(project_id, user_id)) + "#*"


def narrative_pending(project_id: str, user_id: str) -> str:
    return _join(NARRATIVE_PENDING, project_id, user_id)


def backlog_since(tier: str) -> str:
    """When the health probe first saw a tier's queue hold jobs (for stall detection)."""
    return f"{BACKLOG_SINCE}:{tier}"
