"""POST /v1/chat: the fast path. Answers from tier 1 and recalled memory; its reflection job is published after
the response (reverie.platform.after_response). And POST /v1/turns: a turn the caller's own model answered, saved
the same way. The routes are reverie.api.chat's."""

from reverie.api.chat import add_chat_route, oversized
from reverie.api.resolver import make_resolver
from reverie.platform import after_response
from reverie.platform.observability import logger, metrics, tracer

app = add_chat_route(make_resolver())


@after_response.runs_deferred
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return oversized(event) or app.resolve(event, context)
