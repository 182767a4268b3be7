"""The memory API: memories, search, ask, context, users, jobs, status, OpenAPI and MCP."""

from reverie.http import make_resolver, project_id
from reverie.observability import logger, metrics, tracer
from reverie.runtime import clients
from reverie.status import system_status

app = make_resolver()


@app.get("/v1/status")
def status() -> dict:
    project_id(app)
    return system_status(clients())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return app.resolve(event, context)
