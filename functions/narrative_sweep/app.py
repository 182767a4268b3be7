"""Weekly schedule: queue regeneration of stale or missing narratives."""

from reverie.narrative import sweep
from reverie.observability import logger, metrics
from reverie.runtime import clients


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event, context):
    return sweep(clients())
