"""Memories whose vector is not of the current embedding model, and their new vectors (reverie.ops.reembed)."""

from __future__ import annotations

from collections.abc import Sequence

from reverie.store.db import Database, vector_literal

# A vector of another model, or none at all (its write found the model down).
_STALE = "(embedding_model IS DISTINCT FROM %s OR embedding IS NULL)"


def stale(db: Database, project_id: str, model: str, *, after: int, limit: int) -> list[tuple[int, str, str, str]]:
    """Up to `limit` of the project's memories stored after `after` (a seq), current or not (a search as of a past
    moment reads both), whose vector is missing or of another model: (seq, id, text, content_hash), in stored
    order."""
    with db.read(project_id, cursor_factory=None) as cur:
        cur.execute(
            "SELECT seq, id::text, text, content_hash FROM memories WHERE project_id = %s AND seq > %s"
            f" AND {_STALE} ORDER BY seq LIMIT %s",
            (project_id, after, model, limit),
        )
        return [(row[0], row[1], row[2], row[3]) for row in cur.fetchall()]


def count_stale(db: Database, project_id: str, model: str) -> int:
    with db.read(project_id, cursor_factory=None) as cur:
        cur.execute(f"SELECT count(*) FROM memories WHERE project_id = %s AND {_STALE}", (project_id, model))
        return cur.fetchone()[0]


def replace(db: Database, project_id: str, model: str, vectors: Sequence[tuple[str, str, list[float]]]) -> int:
    """Store each (id, content_hash, vector) as the memory's vector of `model`, unless its words changed since they
    were read (an edit re-embeds them itself): how many were stored."""
    if not vectors:
        return 0
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE memories m SET embedding = v.embedding::vector, embedding_model = %(model)s"
            " FROM unnest(%(ids)s::uuid[], %(hashes)s::text[], %(vectors)s::text[]) AS v(id, content_hash, embedding)"
            " WHERE m.project_id = %(project)s AND m.id = v.id AND m.content_hash = v.content_hash",
            {"model": model, "project": project_id, "ids": [v[0] for v in vectors], "hashes": [v[1] for v in vectors],
             "vectors": [vector_literal(v[2]) for v in vectors]},
        )
        return cur.rowcount
