"""Every key of one user, found through the user's own index keys (never by scanning the keyspace): what a
forget deletes. They share the user's hash slot, so they go in one DEL; the job markers, which have slots of
their own, go in one pipeline."""

from __future__ import annotations

from reverie.cache import keys


def user_keys(valkey, project_id: str, user_id: str) -> list[str]:
    """The user's keys that may exist: the fixed ones, each session list and each remembered answer."""
    pipe = valkey.pipeline(transaction=False)
    pipe.smembers(keys.sessions(project_id, user_id))
    pipe.smembers(keys.idempotency_records(project_id, user_id))
    session_ids, records = pipe.execute()
    found = keys.fixed_user_keys(project_id, user_id)
    found += [keys.session(project_id, user_id, _text(s)) for s in sorted(session_ids)]
    found += [_text(r) for r in sorted(records)]
    return found


def delete_user(valkey, project_id: str, user_id: str) -> dict[str, int]:
    """Delete every key of the user; how many went: {"user_keys", "job_markers"}."""
    job_ids = [_text(j) for j in valkey.smembers(keys.user_jobs(project_id, user_id))]
    deleted = int(valkey.delete(*user_keys(valkey, project_id, user_id)))
    markers = 0
    if job_ids:
        pipe = valkey.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.delete(keys.job_marker(project_id, job_id))
        markers = sum(pipe.execute())
    valkey.zrem(keys.outbox_index_of(project_id, user_id), keys.outbox(project_id, user_id))
    return {"user_keys": deleted, "job_markers": markers}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
