"""The embedded engines are real, and the queues are made with template.yaml's names and redrive."""

import json

from reverie.store import NO_PROJECT
from reverie_dev.local.template import Template


def test_queues_and_redrive_come_from_the_template(engines):
    sqs = engines.client("sqs")
    for spec in Template().queues().values():
        url = engines.refs[spec.logical_id]
        assert url.endswith(spec.name)
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["VisibilityTimeout"] == str(spec.visibility_timeout)
        if spec.dlq_logical_id:
            redrive = json.loads(attrs["RedrivePolicy"])
            assert int(redrive["maxReceiveCount"]) == spec.max_receive_count
            assert redrive["deadLetterTargetArn"] == engines.refs[f"{spec.dlq_logical_id}.Arn"]


def test_a_published_job_reaches_every_tier_queue_once(engines, clients, project):
    from reverie.domain.memory import Turn
    from reverie.jobs import delivery
    from reverie.jobs.message import make_job

    job = make_job(project_id=project.project_id, user_id="ana", session_id="s1",
                   turns=[Turn(role="user", content="hello")])
    delivery.send(clients.sns, clients.settings.reflection_topic_arn, job)
    delivery.send(clients.sns, clients.settings.reflection_topic_arn, job)  # a retried publish: deduplicated
    sqs = engines.client("sqs")
    for tier in ("episodic", "semantic", "procedural"):
        url = clients.settings.queue_url(tier)
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
        bodies = [json.loads(m["Body"]) for m in got if json.loads(m["Body"]).get("job_id") == job.job_id]
        assert len(bodies) == 1
        assert got[0]["Attributes"]["MessageGroupId"] == f"{project.project_id}:ana"
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_pgvector_and_valkey_are_real(clients):
    with clients.db.transaction(NO_PROJECT) as conn, conn.cursor() as cur:
        cur.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector")
        assert cur.fetchone()[0] == 1.0
    assert clients.valkey.ping() is True
