"""What recall reads of one user in Valkey, in one round trip: the narrative's hot copy, the session's recent turns
and the list of what the user said that is not learned yet.

They are keys of one user, so they share a hash slot and one pipeline reaches one node: a chat turn pays one round
trip and one command's worth of client work instead of three (each command costs the cluster client ~0.1 ms of CPU,
taken from the lookups a turn runs beside it), and the pipeline goes over that node's own connection (one_node).
"""

from __future__ import annotations

from dataclasses import dataclass

from reverie.cache import keys, narratives, one_node, pending, working_memory
from reverie.domain.memory import PendingTurn, Turn


@dataclass(frozen=True)
class UserReads:
    narrative: narratives.Hot
    recent_turns: list[Turn] | None  # None: not asked for (no session)
    pending: list[tuple[bytes | str, PendingTurn]] | None  # None: not asked for (pending turns are off)


def read(valkey, project_id: str, user_id: str, *, session_id: str | None, recent_limit: int,
         with_pending: bool) -> UserReads:
    """The three reads of `narratives.read`, `working_memory.recent_turns` and `pending.read`, in one pipeline.
    Raises what Valkey raises."""
    with_recent = bool(session_id) and recent_limit > 0
    read = [keys.narrative(project_id, user_id)]
    if with_recent:
        read.append(keys.session(project_id, user_id, session_id))
    if with_pending:
        read.append(keys.pending_turns(project_id, user_id))
    pipe = one_node.pipeline(valkey, read)
    pipe.get(read[0])
    if with_recent:
        pipe.lrange(read[1], -recent_limit, -1)
    if with_pending:
        pipe.lrange(read[-1], 0, -1)
    results = iter(pipe.execute())
    copy = narratives.parse(next(results))
    recent = working_memory.parse_turns(next(results)) if with_recent else None
    said = pending.parse(next(results)) if with_pending else None
    return UserReads(narrative=copy, recent_turns=recent, pending=said)
