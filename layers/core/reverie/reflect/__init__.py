"""Reflection: a tier's queue batch in, memory changes out, each job applied at most once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response

from reverie.models import Tier
from reverie.reflect import offline_skills  # noqa: F401  (registers the offline model's reflection skills)
from reverie.reflect.consumer import BatchReflector


def handle_batch(tier: Tier, event: dict[str, Any], context: Any, clients) -> dict[str, Any]:
    """The reflector functions' entry point: a Lambda SQS event in, a partial batch response out."""
    reflector = BatchReflector(Tier(tier), clients, event.get("Records") or [])
    # skip_group_on_error: one user's failure holds back only that user's later jobs (see reflect.consumer).
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    return process_partial_response(event=event, record_handler=reflector.handle_record, processor=processor,
                                    context=context)
