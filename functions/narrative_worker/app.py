"""Narrative queue consumer: writes a new narrative version per job (partial batch responses)."""

from reverie.platform.clients import clients
from reverie.platform.observability import logger, metrics
from reverie.reflect.narrative import handle_batch


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event, context):
    return handle_batch(event, context, clients())
