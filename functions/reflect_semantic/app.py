"""The semantic reflector: consumes its SQS FIFO queue and writes tier memories (partial batch responses)."""

from reverie.domain.tiers import Tier
from reverie.platform.clients import clients
from reverie.platform.observability import logger, metrics, tracer
from reverie.reflect.consumer import handle_batch


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handle_batch(Tier.SEMANTIC, event, context, clients())
