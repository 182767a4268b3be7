"""The semantic reflector: consumes its SQS FIFO queue and writes tier memories (partial batch responses)."""

from reverie.models import Tier
from reverie.observability import logger, metrics, tracer
from reverie.reflect import handle_batch
from reverie.runtime import clients


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handle_batch(Tier.SEMANTIC, event, context, clients())
