"""Narrative jobs: queued to the narrative queue, where the narrative worker writes a new version."""

from __future__ import annotations

from reverie.jobs.message import NarrativeJob


def enqueue(clients, project_id: str, user_id: str, reason: str = "requested") -> NarrativeJob:
    job = NarrativeJob(project_id=project_id, user_id=user_id, reason=reason)
    clients.sqs.send_message(
        QueueUrl=clients.settings.narrative_queue_url, MessageBody=job.model_dump_json(),
        MessageGroupId=job.group_id, MessageDeduplicationId=job.job_id,
    )
    return job
