"""Turns, memories and their events, as every stage reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from reverie.domain.fields import MessageText, SafeId, Strict, new_id, utcnow
from reverie.domain.tiers import EventKind, Tier


class Turn(Strict):
    turn_id: SafeId = Field(default_factory=new_id)
    role: Literal["user", "assistant", "system"]
    content: MessageText
    created_at: datetime = Field(default_factory=utcnow)


class Memory(BaseModel):
    id: str
    user_id: str
    tier: Tier
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    importance: float | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    created_at: datetime
    updated_at: datetime | None = None
    superseded_at: datetime | None = None
    superseded_by: str | None = None
    source_job_id: str | None = None
    session_id: str | None = None
    embedding_model: str | None = None


class ScoredMemory(Memory):
    score: float = 0.0


class MemoryEvent(BaseModel):
    id: int
    memory_id: str
    event: EventKind
    job_id: str | None = None
    old_text: str | None = None
    new_text: str | None = None
    created_at: datetime


class ContextMemory(BaseModel):
    id: str
    tier: Tier
    text: str
    score: float


class PendingTurn(BaseModel):
    """Something the user said that the tiers have not learned yet (its job is in the outbox, on a queue or held in
    a reflection window): recalled as it was said, marked as not yet learned."""

    job_id: str
    turn_id: str
    session_id: str
    text: str
    said_at: datetime
    learned: Literal[False] = False
    score: float = 0.0
