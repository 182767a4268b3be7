"""Moving a project to another embedding model: its memories embedded again, a batch at a time.

Each vector is stored with the model that made it, and the vector half of a search compares only vectors of the
model the query was embedded with (reverie.store.memory_search.nearest): during a move, memories not yet embedded
again are found by their words alone, never compared across two spaces. The project's memories are walked in stored
order; each answer says where it stopped (`next_after`), and a run started over skips what carries the new model's
name already, so an interrupted move resumes rather than restarts, and a memory written meanwhile has the new
model's vector from the start. The admin action `embeddings.reembed` runs one invocation's share; `reverie
reembed` calls it until nothing is left.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from reverie.domain.errors import ServiceUnavailable
from reverie.llm import LLMError
from reverie.platform.observability import logger
from reverie.store import embeddings

BATCH = 100


@dataclass(frozen=True)
class Reembedded:
    model: str
    reembedded: int
    remaining: int
    next_after: int | None  # where the next call goes on; None: the walk is over

    def as_dict(self) -> dict:
        return asdict(self)


def reembed(clients, project_id: str, *, after: int = 0, batch: int = BATCH, budget_s: float = 20.0) -> Reembedded:
    """Embed the project's memories stored after `after` whose vector is of another model (or missing) with the
    current model, `batch` at a time, until the walk ends or `budget_s` has passed; how many were done, how many
    are left in the whole project, and where to go on."""
    model = clients.llm.embedding_model
    started = time.monotonic()
    done = 0
    position: int | None = after
    while position is not None:
        rows = embeddings.stale(clients.db, project_id, model, after=position, limit=batch)
        if not rows:
            position = None
            break
        try:
            vectors = clients.llm.embed([text for _, _, text, _ in rows],
                                        timeout_s=max(1.0, budget_s - (time.monotonic() - started))).vectors
        except LLMError as exc:
            raise ServiceUnavailable(f"the embedding model did not answer ({exc}); run it again to go on") from exc
        done += embeddings.replace(clients.db, project_id, model,
                                   [(memory_id, digest, vector)
                                    for (_, memory_id, _, digest), vector in zip(rows, vectors, strict=True)])
        # A row whose words changed since it was read was embedded by its edit; it is not read again.
        position = rows[-1][0]
        if time.monotonic() - started >= budget_s:
            break  # at least one batch a call, so every call moves the walk on
    remaining = embeddings.count_stale(clients.db, project_id, model)
    logger.info("memories embedded again", extra={"project_id": project_id, "model": model, "reembedded": done,
                                                  "remaining": remaining})
    return Reembedded(model=model, reembedded=done, remaining=remaining, next_after=position)
