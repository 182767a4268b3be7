"""Helpers for the narrative tests: the narrative jobs a project queued, the worker's SQS event, and the hot copy."""

from __future__ import annotations

from typing import Any

from reverie.cache import keys
from reverie.cache import narratives as hot
from reverie.jobs.message import NarrativeJob
from reverie.reflect import narrative
from tests.support.chat import take_from_queue
from tests.support.reflect import record


def queued_narratives(clients, project_id: str) -> list[NarrativeJob]:
    """Take this project's jobs off the narrative queue (no worker runs here); others' go back at once."""
    return take_from_queue(clients, clients.settings.narrative_queue_url, project_id, narrative.parse)


def worker_event(job: NarrativeJob, *, receive_count: int = 1) -> dict[str, Any]:
    """The narrative worker's SQS event for one job, on its `receive_count`th receive."""
    return {"Records": [record(job.model_dump_json(), job.group_id, receive_count=receive_count)]}


def hot_copy(clients, project_id: str, user_id: str) -> hot.Hot:
    return hot.read(clients.valkey, project_id, user_id)


def hot_key_exists(clients, project_id: str, user_id: str) -> bool:
    return bool(clients.valkey.exists(keys.narrative(project_id, user_id)))
