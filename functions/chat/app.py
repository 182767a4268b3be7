"""POST /v1/chat: the fast path. Answers from tier 1 and recalled memory; its reflection job is published after
the response (reverie.platform.after_response)."""

from reverie.api.resolver import make_resolver, oversized_body, project_id
from reverie.chat.schemas import ChatRequest, ChatResponse
from reverie.chat.turn import chat_turn
from reverie.platform import after_response
from reverie.platform.clients import clients
from reverie.platform.observability import logger, metrics, tracer

app = make_resolver()


@app.post("/v1/chat")
def chat(body: ChatRequest) -> ChatResponse:
    return chat_turn(clients(), project_id(app), body,
                     idempotency_key=app.current_event.headers.get("idempotency-key"),
                     lambda_context=app.lambda_context)


@after_response.runs_deferred
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return oversized_body(event) or app.resolve(event, context)
