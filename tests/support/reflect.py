"""Helpers for the reflection tests: jobs, Lambda-shaped SQS events, private FIFO queues and a drain loop
that behaves like Lambda's event source mapping (receive up to 10, delete successes, give back failures), and
reads of what the reflectors wrote."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from reverie.domain.memory import Turn
from reverie.domain.tiers import Tier
from reverie.jobs.message import ReflectionJob, make_job
from reverie.reflect.consumer import handle_batch


def job(project_id: str, user_id: str, *texts: str, session_id: str = "s1", at: datetime | None = None,
        job_id: str | None = None) -> ReflectionJob:
    """A job of user/assistant turn pairs, one pair per text."""
    at = at or datetime.now(UTC)
    turns = []
    for i, text in enumerate(texts):
        turns.append(Turn(role="user", content=text, created_at=at + timedelta(seconds=2 * i)))
        turns.append(Turn(role="assistant", content="Noted.", created_at=at + timedelta(seconds=2 * i + 1)))
    return make_job(project_id=project_id, user_id=user_id, session_id=session_id, turns=turns, job_id=job_id)


def record(body: str, group_id: str, *, receive_count: int = 1, message_id: str | None = None) -> dict[str, Any]:
    return {
        "messageId": message_id or secrets.token_hex(8),
        "receiptHandle": "test-receipt",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count), "MessageGroupId": group_id,
                       "SentTimestamp": "1795176000000", "ApproximateFirstReceiveTimestamp": "1795176000001",
                       "MessageDeduplicationId": secrets.token_hex(8), "SequenceNumber": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:test.fifo",
        "awsRegion": "us-east-1",
    }


def event(*jobs: ReflectionJob, receive_count: int = 1) -> dict[str, Any]:
    return {"Records": [record(j.model_dump_json(), j.group_id, receive_count=receive_count) for j in jobs]}


class PrivateQueue:
    """A FIFO queue with its own DLQ and the template's redrive (maxReceiveCount 5), for one test."""

    def __init__(self, sqs, max_receive_count: int = 5):
        self.sqs = sqs
        name = "t-" + secrets.token_hex(4)
        self.dlq_url = sqs.create_queue(QueueName=f"{name}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        self.dlq_arn = self.arn(self.dlq_url)
        self.url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={
            "FifoQueue": "true", "VisibilityTimeout": "720",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": self.dlq_arn, "maxReceiveCount": max_receive_count}),
        })["QueueUrl"]
        self.queue_arn = self.arn(self.url)

    def arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def send(self, job: ReflectionJob, *, dedup: str | None = None) -> None:
        """What the topic's raw delivery does: the job's JSON, its user as group, its id as dedup id."""
        self.sqs.send_message(QueueUrl=self.url, MessageBody=job.model_dump_json(), MessageGroupId=job.group_id,
                              MessageDeduplicationId=dedup or job.job_id)

    def send_raw(self, body: str, group_id: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body, MessageGroupId=group_id,
                              MessageDeduplicationId=secrets.token_hex(8))

    def counts(self, url: str | None = None) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url or self.url, AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def drain_once(self, handler, tier: Tier, clients, context) -> dict[str, int]:
        """One receive (up to 10) -> the handler -> delete successes, make failures visible again at once
        (Lambda waits for the visibility timeout; a test need not)."""
        messages = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return {"received": 0, "deleted": 0, "failed": 0}
        records = [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs", "eventSourceARN": self.queue_arn, "awsRegion": "us-east-1",
        } for m in messages]
        try:
            answer = (handler or handle_batch)(tier, {"Records": records}, context, clients)
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        except Exception:
            failed = {r["messageId"] for r in records}  # Lambda fails the whole batch
        for m in messages:
            if m["MessageId"] in failed:
                self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"],
                                                   VisibilityTimeout=0)
            else:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return {"received": len(messages), "deleted": len(messages) - len(failed), "failed": len(failed)}

    def drain(self, tier: Tier, clients, context, *, handler=None, max_rounds: int = 50) -> int:
        rounds = 0
        while rounds < max_rounds and self.drain_once(handler, tier, clients, context)["received"]:
            rounds += 1
        return rounds


def memories_of(db, project_id: str, user_id: str, tier: Tier | None = None, *, current_only: bool = False
                ) -> list[dict[str, Any]]:
    clauses = ["project_id = %s", "user_id = %s"]
    params: list[Any] = [project_id, user_id]
    if tier is not None:
        clauses.append("tier = %s")
        params.append(Tier(tier).value)
    if current_only:
        clauses.append("superseded_at IS NULL")
    with db.cursor(project_id) as cur:
        cur.execute(
            "SELECT id::text, tier, text, metadata, superseded_at, superseded_by::text, valid_to, source_job_id,"
            f" session_id, importance FROM memories WHERE {' AND '.join(clauses)} ORDER BY recorded_at, text",
            params,
        )
        return [dict(r) for r in cur.fetchall()]


def events_of(db, project_id: str, user_id: str) -> list[dict[str, Any]]:
    with db.cursor(project_id) as cur:
        cur.execute("SELECT memory_id::text, event, job_id, old_text, new_text FROM memory_events"
                    " WHERE project_id = %s AND user_id = %s ORDER BY id", (project_id, user_id))
        return [dict(r) for r in cur.fetchall()]


def outcome(db, project_id: str, job_id: str, tier: Tier) -> dict[str, Any] | None:
    with db.cursor(project_id) as cur:
        cur.execute("SELECT status, added, updated, superseded, reason, error FROM processed_jobs"
                    " WHERE project_id = %s AND job_id = %s AND tier = %s", (project_id, job_id, Tier(tier).value))
        row = cur.fetchone()
        return dict(row) if row else None
