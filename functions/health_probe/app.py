"""Every 5 minutes: check engines, queues, DLQs and stalls; drain the outbox (within the invocation's time);
emit metrics."""

from reverie.ops.health import probe
from reverie.platform.clients import clients
from reverie.platform.deadline import Deadline
from reverie.platform.observability import logger, metrics


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event, context):
    return probe(clients(), Deadline.of(context, reserve_s=2))
