"""The memory API: memories, search, ask, context, users, jobs, status, OpenAPI and MCP (reverie.api.routes). The
MCP tool add_turn saves a turn as the chat does, its publish deferred past the response
(reverie.platform.after_response)."""

from reverie.api.resolver import oversized_body
from reverie.api.routes import MAX_BODY_BYTES, make_app
from reverie.platform import after_response
from reverie.platform.observability import logger, metrics, tracer

app = make_app()


@after_response.runs_deferred
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return oversized_body(event, MAX_BODY_BYTES) or app.resolve(event, context)
