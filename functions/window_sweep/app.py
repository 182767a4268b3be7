"""Every minute: send a close message for each reflection window whose oldest job has waited long enough."""

from dataclasses import asdict

from reverie.observability import logger, metrics
from reverie.reflect.window import sweep
from reverie.runtime import clients


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event, context):
    return asdict(sweep(clients()))
