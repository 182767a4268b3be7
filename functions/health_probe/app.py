"""Every 5 minutes: check engines, queues, DLQs and stalls; drain the outbox; emit metrics."""

from reverie.health import probe
from reverie.observability import logger, metrics
from reverie.runtime import clients


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event, context):
    return probe(clients())
