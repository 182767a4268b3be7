"""Weekly schedule: queue regeneration of stale or missing narratives."""

from reverie.platform.clients import clients
from reverie.platform.observability import logger, metrics
from reverie.reflect.narrative import sweep


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event, context):
    return sweep(clients())
