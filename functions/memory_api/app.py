"""The memory API: memories, search, ask, context, users, jobs, status, OpenAPI and MCP (reverie.api.routes)."""

from reverie.api.resolver import oversized_body
from reverie.api.routes import MAX_BODY_BYTES, make_app
from reverie.platform.observability import logger, metrics, tracer

app = make_app()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return oversized_body(event, MAX_BODY_BYTES) or app.resolve(event, context)
