"""The chat function's routes, defined here once: POST /v1/chat, and POST /v1/turns (a turn the caller's own model
answered, remembered the same way). The chat function adds them to its resolver (functions/chat/app.py) and the
OpenAPI document (reverie.api.openapi) describes them with the memory API's."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Header

from reverie.api.resolver import MAX_BODY_BYTES, Reply, oversized_body, project_id
from reverie.api.schemas import ErrorBody
from reverie.chat.idempotency import MAX_KEY_LENGTH
from reverie.chat.schemas import ChatRequest, ChatResponse, RecordTurnRequest, TurnRecorded
from reverie.chat.turn import chat_turn, record_turn
from reverie.platform.clients import clients

TURNS_PATH = "/v1/turns"
# A recorded exchange may hold several messages of up to 32 KB each; no body over a queue message's 256 KB can make a
# job that fits one, so a bigger one is refused before it is parsed. The chat's body holds one message (64 KB).
MAX_TURNS_BODY_BYTES = 256 * 1024

IdempotencyKey = Annotated[str | None, Header(
    pattern=f"^[\\x21-\\x7e]{{1,{MAX_KEY_LENGTH}}}$",
    description="Any string of visible ASCII: a retry with the same key and body gets the first answer back and "
                "queues nothing more (for 24 hours).")]


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"model": ErrorBody}}}


def oversized(event: dict[str, Any]) -> dict[str, Any] | None:
    """The chat function's 413 for a body over its route's limit, answered before anything parses it."""
    limit = MAX_TURNS_BODY_BYTES if event.get("routeKey") == f"POST {TURNS_PATH}" else MAX_BODY_BYTES
    return oversized_body(event, limit)


def add_chat_route(app: APIGatewayHttpResolver) -> APIGatewayHttpResolver:
    """Add the chat function's routes, POST /v1/chat and POST /v1/turns, to `app` (a resolver of
    reverie.api.resolver); their handlers read that resolver's request."""

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

    @app.post(TURNS_PATH, status_code=202,
              summary="Record a turn your own model answered: remembered as a chat turn, with no model call",
              description="For clients that stream from their own model: GET /v1/context before the call, this after "
                          "it. The messages go to the session's tier 1 at once and are learned afterwards (`job_id`), "
                          "exactly as POST /v1/chat's. Counts in the request rate limit only.",
              responses={202: {"description": "Kept in tier 1; the job that learns it is `job_id`.",
                               "content": {"application/json": {"model": TurnRecorded}}},
                         409: _error("The same Idempotency-Key is being answered (`request_in_progress`)."),
                         413: _error("The body, or the job its messages make, is larger than one queue message "
                                     "takes (`payload_too_large`): record the exchange in parts."),
                         422: _error("The Idempotency-Key was used with another body (`idempotency_key_reused`).")})
    def record(body: RecordTurnRequest, idempotency_key: IdempotencyKey = None) -> Response[TurnRecorded]:
        return Reply(202, record_turn(clients(), project_id(app), body, idempotency_key=idempotency_key,
                                      lambda_context=app.lambda_context)).response()

    return app
