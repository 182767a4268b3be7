"""Reflection: a tier's queue batch in, memory changes out, each job applied at most once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from reverie.errors import InvalidJob
from reverie.jobs import parse_job
from reverie.models import Tier
from reverie.observability import logger, metrics


class Reflector:
    def __init__(self, tier: Tier, clients):
        self.tier = tier
        self.clients = clients

    def handle_record(self, record: SQSRecord) -> None:
        try:
            job = parse_job(record.body)
        except InvalidJob as exc:
            # A poison message is refused at once, never retried and never stored unscoped.
            logger.error("poison job refused", extra={"tier": self.tier.value, "reason": exc.message,
                                                      "message_id": record.message_id})
            metrics.add_metric(name="PoisonJobs", unit=MetricUnit.Count, value=1)
            return
        with self.clients.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO processed_jobs (job_id, tier, project_id, user_id, status, reason)"
                " VALUES (%s, %s, %s, %s, 'empty', %s) ON CONFLICT (job_id, tier) DO NOTHING",
                (job.job_id, self.tier.value, job.project_id, job.user_id, "extraction is not configured"),
            )


def handle_batch(tier: Tier, event: dict[str, Any], context: Any, clients) -> dict[str, Any]:
    reflector = Reflector(Tier(tier), clients)
    # skip_group_on_error: one user's failure holds back only that user's later jobs.
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    return process_partial_response(event=event, record_handler=reflector.handle_record, processor=processor,
                                    context=context)
