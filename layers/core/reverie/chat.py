"""The chat turn: tier 1 plus recall, a reply, then one reflection job. Never waits for tiers 2-4."""

from __future__ import annotations

from reverie.errors import ServiceUnavailable
from reverie.models import ChatRequest, ChatResponse


def chat_turn(clients, project_id: str, request: ChatRequest) -> ChatResponse:
    raise ServiceUnavailable("chat is not available in this build")
