"""The outbox: reflection jobs not yet on the topic, parked in Valkey per user until a drain publishes them.

Per user, a hash of parked jobs (job id -> job) and a hash of drainers' claims (job id -> when claimed), both
in the user's hash slot; and an index of the users with parked jobs, by when their oldest was parked, for the
health probe. The index is sharded (reverie.cache.keys.OUTBOX_INDEX_SHARDS sorted sets in slots of their
own), so it is not one hot slot written by every chat turn of every tenant. How jobs get here and leave is
reverie.jobs.delivery's; this module keeps the structure consistent.

The index is a hint, kept in another slot than the jobs, so it cannot change atomically with them. A job is
parked first, then listed; a drain that empties an outbox unlists it, then looks again and lists it back if
a job arrived meanwhile. So every parked job is listed once its park has finished, whatever the interleaving.

Why claim -> publish -> remove, and what a crash in between costs.
SNS and Valkey are two systems, so publishing a job and removing it from the outbox cannot be one atomic
step. Removing first would lose the job if the drainer died before publishing; publishing first can at
worst send it twice, so that is the order. Before publishing, a drainer claims the job (HSETNX of the
claim time); a failed publish releases the claim, a successful one removes job and claim atomically
(a script). So a claim that outlives its lease means a drainer died mid-publish, outcome unknown:
  - claim younger than the lease: another drainer may be publishing it now; stop (and keep the order);
  - younger than SAFE_REPUBLISH_S: republish. The dedup id is the job id, and SNS FIFO drops a
    duplicate within its 5-minute window, so this sends nothing twice;
  - older: SNS would no longer drop a duplicate. If any tier has recorded the job (processed_jobs), it
    was published: remove it without publishing. Otherwise republish; the remaining case (published,
    still waiting in a queue after 4 minutes) is applied at most once per tier by the reflectors
    (processed_jobs), so it changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from enum import Enum
from typing import Any

from reverie.cache import keys

CLAIM_LEASE_S = 60
SNS_DEDUP_WINDOW_S = 300
SAFE_REPUBLISH_S = SNS_DEDUP_WINDOW_S - 60  # margin for a publish that itself took a while

# Both keys are the user's, in one slot: valid on a cluster.
_ACK = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local left = redis.call('HLEN', KEYS[1])
if left == 0 then
    redis.call('DEL', KEYS[2])
end
return left
"""


class Claim(Enum):
    FRESH = "fresh"  # nobody held it: publish
    BUSY = "busy"  # another drainer holds it within its lease: stop
    TAKEN_OVER = "taken_over"  # its drainer died recently: republishing is deduplicated by SNS
    UNKNOWN = "unknown"  # its drainer died long ago: check whether it was published before republishing


def park(pipe_or_valkey, project_id: str, user_id: str, job_id: str, body: str) -> None:
    """Add a job to its user's outbox, then list the user in the index (see the module docstring)."""
    key = keys.outbox(project_id, user_id)
    pipe_or_valkey.hset(key, job_id, body)
    pipe_or_valkey.zadd(keys.outbox_index_of(project_id, user_id), {key: time.time()}, nx=True)


def has_parked(valkey, project_id: str, user_id: str) -> bool:
    return bool(valkey.exists(keys.outbox(project_id, user_id)))


def is_parked(valkey, project_id: str, user_id: str, job_id: str) -> bool:
    return bool(valkey.hexists(keys.outbox(project_id, user_id), job_id))


def parked(valkey, project_id: str, user_id: str) -> dict[str, bytes]:
    """The user's parked jobs: job id -> the job as it was parked."""
    return {(k.decode() if isinstance(k, bytes) else k): v
            for k, v in valkey.hgetall(keys.outbox(project_id, user_id)).items()}


def pending(valkey, project_id: str, user_id: str) -> int:
    return valkey.hlen(keys.outbox(project_id, user_id))


def claim(valkey, project_id: str, user_id: str, job_id: str) -> Claim:
    claims = keys.outbox_claims(project_id, user_id)
    now = time.time()
    if valkey.hsetnx(claims, job_id, now):
        return Claim.FRESH
    raw = valkey.hget(claims, job_id)
    age = now - float(raw) if raw else 0.0
    if age < CLAIM_LEASE_S:
        return Claim.BUSY
    valkey.hset(claims, job_id, now)
    return Claim.TAKEN_OVER if age < SAFE_REPUBLISH_S else Claim.UNKNOWN


def release(valkey, project_id: str, user_id: str, job_id: str) -> None:
    """Give up a claim (the publish failed): the next drain tries the job again."""
    valkey.hdel(keys.outbox_claims(project_id, user_id), job_id)


def remove(valkey, project_id: str, user_id: str, job_id: str) -> None:
    """Remove a published job and its claim at once; unlist the user once the outbox is empty. An empty
    `job_id` only clears a stale index entry."""
    key = keys.outbox(project_id, user_id)
    left = valkey.eval(_ACK, 2, key, keys.outbox_claims(project_id, user_id), job_id)
    if left == 0:
        index = keys.outbox_index_of(project_id, user_id)
        valkey.zrem(index, key)
        if valkey.hlen(key):  # parked meanwhile, after its park listed it: list it again
            valkey.zadd(index, {key: time.time()}, nx=True)


def owners(valkey, limit: int) -> Iterator[tuple[str, str]]:
    """(project_id, user_id) of the users with parked jobs, the longest-waiting first."""
    entries = [entry for shard in range(keys.OUTBOX_INDEX_SHARDS)
               for entry in valkey.zrange(keys.outbox_index(shard), 0, limit - 1, withscores=True)]
    for raw_key, _ in sorted(entries, key=lambda entry: entry[1])[:limit]:
        yield keys.owner_of(raw_key.decode() if isinstance(raw_key, bytes) else raw_key)


def stats(valkey) -> dict[str, Any]:
    """{users, jobs, oldest_age_s} of every project: what the health probe and the operator's status report."""
    pipe = valkey.pipeline(transaction=False)
    for shard in range(keys.OUTBOX_INDEX_SHARDS):
        pipe.zrange(keys.outbox_index(shard), 0, -1, withscores=True)
    return _summary(valkey, [entry for shard in pipe.execute() for entry in shard])


def project_stats(valkey, project_id: str) -> dict[str, Any]:
    """{users, jobs, oldest_age_s} of one project's users: what its GET /v1/status reports. The index lists the
    users' outbox keys, whose hash tag starts with the project, so the index shards are read filtered by it."""
    match = keys.project_outboxes(project_id)
    entries = [entry for shard in range(keys.OUTBOX_INDEX_SHARDS)
               for entry in valkey.zscan_iter(keys.outbox_index(shard), match=match, count=1000)]
    return _summary(valkey, entries)


def by_project(valkey) -> dict[str, dict[str, Any]]:
    """{users, jobs, oldest_age_s} per project with parked jobs: the operator's view of who is waiting."""
    pipe = valkey.pipeline(transaction=False)
    for shard in range(keys.OUTBOX_INDEX_SHARDS):
        pipe.zrange(keys.outbox_index(shard), 0, -1, withscores=True)
    grouped: dict[str, list[tuple[Any, float]]] = {}
    for raw_key, score in (entry for shard in pipe.execute() for entry in shard):
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        grouped.setdefault(keys.owner_of(key)[0], []).append((key, score))
    counts = iter(_lengths(valkey, [entry for entries in grouped.values() for entry in entries]))
    return {project: _figures(entries, [next(counts) for _ in entries]) for project, entries in grouped.items()}


def _summary(valkey, entries: list[tuple[Any, float]]) -> dict[str, Any]:
    """{users, jobs, oldest_age_s} of index entries (user outbox key, when its oldest job was parked)."""
    return _figures(entries, _lengths(valkey, entries))


def _lengths(valkey, entries: list[tuple[Any, float]]) -> list[int]:
    """How many jobs each listed outbox holds (0 for one emptied since it was listed), in one round trip."""
    if not entries:
        return []
    pipe = valkey.pipeline(transaction=False)
    for key, _ in entries:
        pipe.hlen(key)
    return pipe.execute()


def _figures(entries: list[tuple[Any, float]], counts: list[int]) -> dict[str, Any]:
    if not entries:
        return {"users": 0, "jobs": 0, "oldest_age_s": 0}
    oldest = min(score for _, score in entries)
    return {"users": sum(1 for c in counts if c), "jobs": sum(counts),
            "oldest_age_s": round(max(0.0, time.time() - oldest), 1)}
