"""Every key of one user, found through the user's own index keys (never by scanning the keyspace): what a
forget deletes. They share the user's hash slot, so they go in one DEL; the job markers, which have slots of
their own, go in one pipeline. And the writes of work that a forget overtook (a turn still being answered
when the user was forgotten), which the forget's mark voids."""

from __future__ import annotations

import json

from reverie.cache import keys, one_node


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


# ---------------------------------------------------------------- writes that a forget makes void

# How long a forget's mark lives: longer than any work begun before it can take (a Lambda invocation runs 15 minutes
# at most). It names the user, like the tombstone row in Postgres, and is gone after that.
FORGOTTEN_TTL_S = 15 * 60

# Runs the user's writes (commands whose key arguments are KEYS[i]) unless the user was forgotten after the
# work began: KEYS[1] is the forget mark, ARGV[1] when the work began, ARGV[2] the commands as JSON.
_WRITE_UNLESS_FORGOTTEN = """
local forgotten = redis.call('GET', KEYS[1])
if forgotten and tonumber(forgotten) >= tonumber(ARGV[1]) then
    return false
end
local results = {}
for _, command in ipairs(cjson.decode(ARGV[2])) do
    local args = {}
    for i, arg in ipairs(command) do
        if type(arg) == 'table' then args[i] = KEYS[arg[1]] else args[i] = arg end
    end
    results[#results + 1] = redis.call(unpack(args))
end
return results
"""


def mark_forgotten(valkey, project_id: str, user_id: str, at: float) -> None:
    valkey.set(keys.forgotten(project_id, user_id), repr(at), ex=FORGOTTEN_TTL_S)


def forgotten_since(valkey, project_id: str, user_id: str, began_at: float) -> bool:
    """True when the user was forgotten after `began_at` (epoch seconds): the work's results must not stay."""
    raw = valkey.get(keys.forgotten(project_id, user_id))
    return raw is not None and float(raw) >= began_at


class UserWrites:
    """A pipeline of one user's writes that a forget made after `began_at` voids as a whole: the writes to the
    user's own keys run in one script that first looks for the forget's mark (they share its slot, so this is
    atomic on a cluster). The writes to other slots (a job's marker, the outbox index) go in the same round trip, and
    are undone when the script found the mark. Offers the few pipeline commands the chat and the API use."""

    # The commands that may write a key of another slot, and how each is undone.
    _UNDO = {"set": lambda pipe, key, *_: pipe.delete(key),
             "zadd": lambda pipe, key, mapping, *_: pipe.zrem(key, *mapping)}

    def __init__(self, valkey, project_id: str, user_id: str, began_at: float):
        self.valkey = valkey
        self.project_id, self.user_id, self.began_at = project_id, user_id, began_at
        self._tag = keys.user_tag(project_id, user_id)
        self._keys: list[str] = [keys.forgotten(project_id, user_id)]
        self._own: list[list] = []
        self._others: list[tuple[str, tuple, dict]] = []

    def _command(self, name: str, key: str, *args, **options) -> None:
        if self._tag not in key:
            if name.lower() not in self._UNDO:
                raise ValueError(f"{name} of a key outside the user's slot cannot be undone")
            self._others.append((name.lower(), (key, *args), options))
            return
        if key not in self._keys:
            self._keys.append(key)
        command: list = [name, [self._keys.index(key) + 1], *[str(a) for a in args]]
        if options.get("nx"):
            command.append("NX")
        if options.get("ex") is not None:
            command += ["EX", str(int(options["ex"]))]
        self._own.append(command)

    def rpush(self, key: str, *values) -> None:
        self._command("RPUSH", key, *values)

    def ltrim(self, key: str, start: int, end: int) -> None:
        self._command("LTRIM", key, start, end)

    def expire(self, key: str, seconds: int) -> None:
        self._command("EXPIRE", key, seconds)

    def sadd(self, key: str, *members) -> None:
        self._command("SADD", key, *members)

    def hset(self, key: str, field: str, value) -> None:
        self._command("HSET", key, field, value)

    def set(self, key: str, value, *, ex: int | None = None, nx: bool = False) -> None:
        self._command("SET", key, value, ex=ex, nx=nx)

    def zadd(self, key: str, mapping: dict, nx: bool = False) -> None:
        if self._tag in key:
            raise ValueError("a sorted set of the user's own is not written this way")
        self._command("ZADD", key, mapping, nx=nx)

    def execute(self) -> list | None:
        """The results of the user's own writes, in order; None when a forget voided them (nothing written, the
        other slots' writes undone)."""
        script = (_WRITE_UNLESS_FORGOTTEN, len(self._keys), *self._keys, repr(self.began_at), json.dumps(self._own))
        if not self._others:
            results = self.valkey.eval(*script)
            return None if results is None else list(results)
        # One round trip, not two: a chat answers only once this is written. A forget that races the turn may leave
        # the other slots' writes behind for a moment, until they are undone; when they were sent after the script,
        # it could leave them behind for good.
        pipe = one_node.pipeline(self.valkey, [*self._keys, *[args[0] for _, args, _ in self._others]])
        pipe.execute_command("EVAL", *script)  # (the cluster pipeline has no eval method; the command routes)
        for name, args, options in self._others:
            getattr(pipe, name)(*args, **options)
        results = pipe.execute()[0]
        if results is not None:
            return list(results)
        undo = one_node.pipeline(self.valkey, [args[0] for _, args, _ in self._others])
        for name, args, _ in self._others:
            self._UNDO[name](undo, *args)
        undo.execute()
        return None
