"""Every minute: send a close message for each reflection window whose oldest job has waited long enough."""

from dataclasses import asdict

from reverie.platform.clients import clients
from reverie.platform.observability import logger, metrics
from reverie.reflect.window import sweep


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event, context):
    return asdict(sweep(clients()))
