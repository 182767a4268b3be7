"""What POST /v1/chat and POST /v1/turns take and answer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from reverie.domain.fields import MessageText, Metadata, ProjectScoped, SafeId, Strict
from reverie.domain.memory import ContextMemory, PendingTurn


class ChatRequest(ProjectScoped):
    user_id: SafeId
    session_id: SafeId
    message: MessageText
    metadata: Metadata = Field(default_factory=dict)


class ChatContext(BaseModel):
    memories: list[ContextMemory] = Field(default_factory=list)
    rules: list[ContextMemory] = Field(default_factory=list)
    narrative: bool = False
    pending: list[PendingTurn] = Field(default_factory=list, description="What the user said in other sessions "
                                       "lately that the tiers have not learned yet, as the reply was given it.")


class ChatResponse(BaseModel):
    reply: str
    session_id: str
    turn_id: str
    job_id: str
    memory_saved: bool
    context: ChatContext


# An exchange recorded with POST /v1/turns: its messages in the order they were said. The request's body (256 KB at
# most, reverie.api.chat) and the one queue message its job travels in bound it further.
MAX_RECORDED_MESSAGES = 50


class TurnMessage(Strict):
    role: Literal["user", "assistant", "system"]
    content: MessageText


class RecordTurnRequest(ProjectScoped):
    """A turn answered by the caller's own model, as it happened: the user's message and the reply (not the prompt;
    what Reverie gave the prompt is already remembered)."""

    user_id: SafeId
    session_id: SafeId
    messages: list[TurnMessage] = Field(min_length=1, max_length=MAX_RECORDED_MESSAGES)
    metadata: Metadata = Field(default_factory=dict)


class TurnRecorded(BaseModel):
    turn_id: str = Field(description="The exchange's id; its messages are `{turn_id}:0`, `{turn_id}:1`, ... in tier 1.")
    job_id: str = Field(description="The reflection job that learns the exchange: GET /v1/jobs/{job_id}.")
    memory_saved: bool = Field(description="false when nothing was kept: the user was forgotten meanwhile, or neither "
                                           "Valkey nor the topic took the job (as POST /v1/chat's).")
