"""Memories and narratives written straight into the store, as the reflectors would have written them."""

from __future__ import annotations

from datetime import timedelta

from reverie.domain.fields import utcnow
from reverie.domain.tiers import Tier
from reverie.store import memories


def remember(clients, project_id: str, user_id: str, text: str, tier: Tier = Tier.SEMANTIC, *,
             embed: bool = True, session_id: str | None = None, embedding_model: str | None = None) -> str:
    """Store `text` as a current memory (embedded with the clients' model unless `embed` is False); its id."""
    vector = clients.llm.embed([text]).vectors[0] if embed else None
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        return memories.insert(cur, project_id, user_id, memories.NewMemory(
            tier=tier, text=text, embedding=vector, session_id=session_id,
            embedding_model=embedding_model or clients.llm.embedding_model))


def write_narrative(clients, project_id: str, user_id: str, text: str, *, age_days: int = 0) -> None:
    with clients.db.transaction(project_id) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO narratives (project_id, user_id, version, text, generated_at)"
                    " VALUES (%s, %s, 1, %s, %s)", (project_id, user_id, text, utcnow() - timedelta(days=age_days)))
