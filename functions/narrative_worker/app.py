"""Narrative queue consumer: writes a new narrative version per job (partial batch responses)."""

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response

from reverie.narrative import generate, parse
from reverie.observability import logger, metrics
from reverie.runtime import clients


def _record(record):
    generate(clients(), parse(record.body))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event, context):
    return process_partial_response(event=event, record_handler=_record, context=context,
                                    processor=SqsFifoPartialProcessor(skip_group_on_error=True))
