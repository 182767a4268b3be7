"""What POST /v1/chat takes and answers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from reverie.domain.fields import MessageText, Metadata, ProjectScoped, SafeId
from reverie.domain.memory import ContextMemory


class ChatRequest(ProjectScoped):
    user_id: SafeId
    session_id: SafeId
    message: MessageText
    metadata: Metadata = Field(default_factory=dict)


class ChatContext(BaseModel):
    memories: list[ContextMemory] = Field(default_factory=list)
    rules: list[ContextMemory] = Field(default_factory=list)
    narrative: bool = False


class ChatResponse(BaseModel):
    reply: str
    session_id: str
    turn_id: str
    job_id: str
    memory_saved: bool
    context: ChatContext
