"""Narratives are queued jobs: the sweep finds missing ones, the worker writes versions with citations."""

import json

from reverie.domain.tiers import Tier
from reverie.jobs.message import NarrativeJob
from reverie.reflect import narrative
from reverie.store import narratives, user_data
from tests.support.memories import remember


def _remember(clients, project_id, user_id, texts, tier=Tier.SEMANTIC):
    return [remember(clients, project_id, user_id, text, tier) for text in texts]


def _drain(clients):
    url = clients.settings.narrative_queue_url
    jobs = []
    while True:
        got = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return jobs
        for m in got:
            jobs.append(narrative.parse(m["Body"]))
            clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_sweep_queues_users_without_a_narrative_and_the_worker_writes_one(clients, project):
    _drain(clients)
    ids = _remember(clients, project.project_id, "ana", ["User lives in Porto", "User's sister is Ana"])
    narrative.sweep(clients)
    queued = [j for j in _drain(clients) if j.project_id == project.project_id]
    assert [(j.user_id, j.reason) for j in queued] == [("ana", "missing")]

    outcome = narrative.generate(clients, queued[0])
    assert outcome["version"] == 1
    latest = narratives.latest(clients.db, project.project_id, "ana")
    assert latest["version"] == 1 and set(latest["citations"]) == set(ids) and latest["text"]

    narrative.sweep(clients)  # fresh now: not queued again
    assert not [j for j in _drain(clients) if j.project_id == project.project_id]
    assert narrative.generate(clients, NarrativeJob(project_id=project.project_id, user_id="ana"))["version"] == 2


def test_a_user_without_memories_gets_no_narrative(clients, project):
    outcome = narrative.generate(clients, NarrativeJob(project_id=project.project_id, user_id="nobody"))
    assert outcome == {"version": None, "reason": "no memories"}
    assert narratives.latest(clients.db, project.project_id, "nobody") is None


def test_a_job_made_before_a_forget_writes_nothing(clients, project):
    _remember(clients, project.project_id, "bo", ["User plays chess"])
    job = NarrativeJob(project_id=project.project_id, user_id="bo")
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        user_data.forget_user(cur, project.project_id, "bo")
    _remember(clients, project.project_id, "bo", ["User plays go"])  # new data after the forget
    assert narrative.generate(clients, job) == {"version": None, "reason": "user forgotten"}
    assert narratives.latest(clients.db, project.project_id, "bo") is None


def test_the_worker_handler_reports_no_failures_for_a_good_job(clients, project, lambda_context):
    from tests.support.functions import load_function

    _remember(clients, project.project_id, "cy", ["User likes jazz"])
    job = NarrativeJob(project_id=project.project_id, user_id="cy")
    event = {"Records": [{"messageId": "m1", "receiptHandle": "r1", "body": job.model_dump_json(),
                          "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": job.group_id,
                                         "SentTimestamp": "0", "SenderId": "x",
                                         "ApproximateFirstReceiveTimestamp": "0"},
                          "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                          "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:reverie-narrative.fifo",
                          "awsRegion": "us-east-1"}]}
    assert load_function("NarrativeWorkerFunction")(event, lambda_context) == {"batchItemFailures": []}
    assert json.loads(json.dumps(narratives.latest(clients.db, project.project_id, "cy"), default=str))["version"] == 1
