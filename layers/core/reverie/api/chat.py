"""POST /v1/chat, the chat function's one route, defined here once: the chat function adds it to its resolver
(functions/chat/app.py) and the OpenAPI document (reverie.api.openapi) describes it with the memory API's."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Header

from reverie.api.resolver import project_id
from reverie.api.schemas import ErrorBody
from reverie.chat.idempotency import MAX_KEY_LENGTH
from reverie.chat.schemas import ChatRequest, ChatResponse
from reverie.chat.turn import chat_turn
from reverie.platform.clients import clients

IdempotencyKey = Annotated[str | None, Header(
    pattern=f"^[\\x21-\\x7e]{{1,{MAX_KEY_LENGTH}}}$",
    description="Any string of visible ASCII: a retry with the same key and body gets the first answer back and "
                "queues nothing more (for 24 hours).")]


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"model": ErrorBody}}}


def add_chat_route(app: APIGatewayHttpResolver) -> APIGatewayHttpResolver:
    """Add POST /v1/chat to `app` (a resolver of reverie.api.resolver); its handler reads that resolver's request."""

    @app.post("/v1/chat", summary="One chat turn: a reply from working memory and what was learned before",
              description="Answers at once; what was said is learned afterwards (its job is `job_id`).",
              responses={200: {"description": "The reply, the memories it used and the job that learns the turn.",
                               "content": {"application/json": {"model": ChatResponse}}},
                         409: _error("The same Idempotency-Key is being answered (`request_in_progress`), or the "
                                     "user was forgotten meanwhile (`user_forgotten`); nothing was kept."),
                         422: _error("The Idempotency-Key was used with another body (`idempotency_key_reused`).")})
    def chat(body: ChatRequest, idempotency_key: IdempotencyKey = None) -> ChatResponse:
        return chat_turn(clients(), project_id(app), body, idempotency_key=idempotency_key,
                         lambda_context=app.lambda_context)

    return app
