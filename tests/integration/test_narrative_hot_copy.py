"""The narrative's hot copy in Valkey (written with each version, read before Postgres, dropped with a deleted
memory, gone with a forget), one pending job per user, and a narrative job that fails: visible on the job, in a
metric, in the DLQ, and in the narrative's own answer."""

from __future__ import annotations

import json

import pytest

from reverie import forget
from reverie.cache import keys
from reverie.cache import narratives as hot
from reverie.domain.tiers import NARRATIVE, Tier
from reverie.jobs import narratives as narrative_jobs
from reverie.jobs.message import NarrativeJob
from reverie.llm import LLMUnavailable
from reverie.reflect import narrative
from reverie.store import narratives, processed_jobs
from tests.support.chat import emitted_metrics, post_chat, published, valkey_keys_of
from tests.support.clients import swapped
from tests.support.functions import load_function
from tests.support.llm import SpyLLM
from tests.support.memories import remember, write_narrative
from tests.support.narratives import hot_copy, hot_key_exists, queued_narratives, worker_event
from tests.support.reflect import PrivateQueue

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _leave_the_narrative_queue_clean(clients, project):
    yield
    queued_narratives(clients, project.project_id)


def _written(clients, project_id: str, user_id: str, *texts: str) -> dict:
    """Memories, then a narrative version written by the worker from them; the version's row."""
    for text in texts or ("User lives in Porto", "User's sister is Ana"):
        remember(clients, project_id, user_id, text)
    assert narrative.generate(clients, NarrativeJob(project_id=project_id, user_id=user_id))["version"]
    return narratives.latest(clients.db, project_id, user_id)


# ---------------------------------------------------------------- the hot copy


def test_a_written_version_is_in_the_hot_copy_and_read_from_there_without_postgres(api, clients, project):
    story = _written(clients, project.project_id, "ana")
    copy = hot_copy(clients, project.project_id, "ana")
    assert copy.state is hot.State.FOUND and copy.narrative == story
    with swapped(clients, postgres_down=True):
        status, body, _ = api("GET", "/v1/users/ana/narrative")
        assert narrative_jobs.current(clients, project.project_id, "ana") == story
    assert status == 200 and body["version"] == story["version"] and body["narrative"] == story["text"]


def test_a_miss_is_read_from_postgres_and_fills_the_copy(api, clients, project):
    write_narrative(clients, project.project_id, "ana", "Ana is a teacher in Porto.")  # no copy made
    assert hot_copy(clients, project.project_id, "ana").state is hot.State.MISS
    status, body, _ = api("GET", "/v1/users/ana/narrative")
    assert status == 200 and body["narrative"] == "Ana is a teacher in Porto."
    assert hot_copy(clients, project.project_id, "ana").narrative["text"] == "Ana is a teacher in Porto."


def test_a_fill_never_replaces_a_newer_version(clients, project):
    older = _written(clients, project.project_id, "ana")
    newer = narratives.latest(clients.db, project.project_id, "ana") | {"version": older["version"] + 1}
    narrative_jobs.refresh(clients, NarrativeJob(project_id=project.project_id, user_id="ana"), newer)
    narrative_jobs._write(clients, project.project_id, "ana", older, 0, fill=True)  # a reader that read earlier
    assert hot_copy(clients, project.project_id, "ana").narrative["version"] == newer["version"]


def test_a_kept_chat_turn_of_a_user_without_a_narrative_marks_so_until_the_first_version_replaces_the_mark(
        clients, project):
    p = project.project_id
    remember(clients, p, "ana", "User lives in Porto")
    assert narrative_jobs.current(clients, p, "ana") is None
    assert not hot_key_exists(clients, p, "ana")  # a read leaves nothing: the user may have been forgotten
    status, _ = post_chat(p, {"user_id": "ana", "session_id": "s1", "message": "Where do I live?"})
    assert status == 200
    assert hot_copy(clients, p, "ana").state is hot.State.NONE
    assert 0 < clients.valkey.ttl(keys.narrative(p, "ana")) <= hot.NONE_TTL_S
    with swapped(clients, postgres_down=True):  # the turns that follow do not ask Postgres for it
        assert narrative_jobs.for_recall(clients, p, "ana") is None
    story = _written(clients, p, "ana", "User plays chess")
    assert hot_copy(clients, p, "ana").narrative == story
    assert narrative_jobs.current(clients, p, "ana") == story


def test_a_forget_leaves_no_hot_copy(api, clients, project):
    _written(clients, project.project_id, "ana")
    assert hot_key_exists(clients, project.project_id, "ana")
    status, _, _ = api("DELETE", "/v1/users/ana")
    assert status == 202
    assert not hot_key_exists(clients, project.project_id, "ana")
    assert [k for k in valkey_keys_of(clients, project.project_id) if keys.user_tag(project.project_id, "ana") in k
            ] == []
    status, body, _ = api("GET", "/v1/users/ana/narrative")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert not hot_key_exists(clients, project.project_id, "ana")


def test_a_version_written_by_a_job_made_before_a_forget_leaves_no_hot_copy(api, clients, project):
    remember(clients, project.project_id, "ana", "User lives in Porto")
    job = NarrativeJob(project_id=project.project_id, user_id="ana")
    api("DELETE", "/v1/users/ana")
    remember(clients, project.project_id, "ana", "User plays chess")  # new data after the forget
    assert narrative.generate(clients, job) == {"version": None, "reason": "user forgotten"}
    story = {"text": "x", "version": 1, "generated_at": job.created_at, "citations": []}
    narrative_jobs.refresh(clients, job, story)  # as if the version had been written just before the forget
    assert not hot_key_exists(clients, project.project_id, "ana")


def test_a_deleted_memory_drops_the_copy_and_no_earlier_read_fills_it_back(api, clients, project):
    ids = [remember(clients, project.project_id, "ana", t) for t in ("User lives in Porto", "User likes jazz")]
    assert narrative.generate(clients, NarrativeJob(project_id=project.project_id, user_id="ana"))["version"] == 1
    quoted = narratives.latest(clients.db, project.project_id, "ana")
    assert hot_copy(clients, project.project_id, "ana").state is hot.State.FOUND

    assert api("DELETE", f"/v1/memories/{ids[0]}")[0] == 204
    assert hot_copy(clients, project.project_id, "ana").state is hot.State.DROPPED
    # a reader that read Postgres before the delete fills only if nothing is there: the mark is
    narrative_jobs._write(clients, project.project_id, "ana", quoted, 0, fill=True)
    assert hot_copy(clients, project.project_id, "ana").state is hot.State.DROPPED
    status, body, _ = api("GET", "/v1/users/ana/narrative")
    assert status == 202  # the quoting version went with the memory: a new one is queued
    assert "Porto" not in json.dumps(body)


# ---------------------------------------------------------------- one pending job per user


def test_a_stale_narrative_is_used_by_the_chat_and_its_regeneration_queued_once(clients, project):
    write_narrative(clients, project.project_id, "ben", "Ben is a chef.", age_days=30)
    recorder = SpyLLM()
    with swapped(clients, llm=recorder):
        for _ in range(3):
            status, answer = post_chat(project.project_id, {"user_id": "ben", "session_id": "s1", "message": "hi"})
            assert status == 200 and answer["context"]["narrative"] is True
    assert recorder.calls["chat:narrative"] == 0  # never written in the chat
    assert all("Ben is a chef." in reply[0]["content"] for reply in recorder.replies)
    queued = queued_narratives(clients, project.project_id)
    assert [(j.user_id, j.reason) for j in queued] == [("ben", "stale")]
    published(clients, project.project_id)

    remember(clients, project.project_id, "ben", "User cooks Basque food")
    assert narrative.generate(clients, queued[0])["version"] == 2
    assert hot_copy(clients, project.project_id, "ben").narrative["version"] == 2
    assert narrative_jobs.pending(clients, project.project_id, "ben") is None  # the next may be queued


def test_the_context_reads_the_hot_copy_too(api, clients, project):
    story = _written(clients, project.project_id, "ana")
    with swapped(clients, postgres_down=True):
        status, body, _ = api("GET", "/v1/context", query={"user_id": "ana", "max_tokens": 500})
    assert status == 200 and body["narrative"] == story["text"] and body["narrative_version"] == story["version"]


def test_a_pending_job_is_named_again_not_queued_twice(api, clients, project):
    remember(clients, project.project_id, "ana", "User lives in Porto")
    first = api("GET", "/v1/users/ana/narrative")
    again = api("GET", "/v1/users/ana/narrative")
    regenerate = api("POST", "/v1/users/ana/narrative/regenerate")
    assert first[0] == again[0] == 202 and regenerate[0] == 202
    assert first[1]["job_id"] == again[1]["job_id"] == regenerate[1]["job_id"]
    status, job, _ = api("GET", f"/v1/jobs/{first[1]['job_id']}")
    assert status == 200 and job["status"] == "queued" and job["tiers"] == {}
    assert job["narrative"]["status"] == "queued"
    [queued] = queued_narratives(clients, project.project_id)
    assert queued.job_id == first[1]["job_id"]

    narrative.generate(clients, queued)
    status, job, headers = api("GET", f"/v1/jobs/{queued.job_id}")
    assert job["status"] == "done" and job["narrative"]["reason"].startswith("version 1 written")
    assert "retry-after" not in headers
    assert narrative.generate(clients, queued) == {"version": None, "reason": "already done"}  # a redelivery
    assert narratives.latest(clients.db, project.project_id, "ana")["version"] == 1


def test_a_user_without_memories_gets_a_404_and_no_job(api, clients, project):
    status, body, _ = api("GET", "/v1/users/nobody/narrative")
    assert status == 404 and "no memories" in body["error"]["message"]
    assert queued_narratives(clients, project.project_id) == []


def test_the_sweep_queues_no_second_job_for_a_user_with_one_pending(clients, project):
    remember(clients, project.project_id, "ana", "User lives in Porto")
    narrative.sweep(clients)
    narrative.sweep(clients)
    assert [j.user_id for j in queued_narratives(clients, project.project_id)] == ["ana"]


# ---------------------------------------------------------------- a narrative that fails


def test_a_failing_narrative_is_failed_then_dead_in_its_status_metric_dlq_and_get(api, clients, project,
                                                                                  lambda_context, capsys):
    remember(clients, project.project_id, "ana", "User lives in Porto")
    status, pending, _ = api("GET", "/v1/users/ana/narrative")
    [job] = queued_narratives(clients, project.project_id)
    assert status == 202 and pending["job_id"] == job.job_id
    queue = PrivateQueue(clients.sqs)
    queue.sqs.send_message(QueueUrl=queue.url, MessageBody=job.model_dump_json(), MessageGroupId=job.group_id,
                           MessageDeduplicationId=job.job_id)
    worker = load_function("NarrativeWorkerFunction")
    capsys.readouterr()
    with swapped(clients, llm=SpyLLM(fail={"narrative": LLMUnavailable("the model is down")})):
        answer = _receive_once(queue, worker, lambda_context)  # the first receive fails
        assert answer == 1
        status, body, headers = api("GET", f"/v1/jobs/{job.job_id}")
        assert body["status"] == "failed" and "the model is down" in body["narrative"]["error"]
        assert "receive 1 of 5" in body["narrative"]["reason"] and headers["retry-after"] == "60"
        status, waiting, _ = api("GET", "/v1/users/ana/narrative")
        assert status == 202 and waiting["job_id"] == job.job_id and "receive 1 of 5" in waiting["reason"]
        while _receive_once(queue, worker, lambda_context):  # the queue's redrive, after its fifth receive
            pass
    assert queue.counts(queue.dlq_url) == 1 and queue.counts() == 0
    assert emitted_metrics(capsys.readouterr().out).get("NarrativeFailures") == 5
    status, body, headers = api("GET", f"/v1/jobs/{job.job_id}")
    assert body["status"] == "dead" and "dead-letter queue" in body["narrative"]["reason"]
    assert "retry-after" not in headers
    status, failed, _ = api("GET", "/v1/users/ana/narrative")
    assert status == 503 and failed["error"]["code"] == "narrative_failed"
    assert job.job_id in failed["error"]["message"] and "the model is down" in failed["error"]["message"]
    assert queued_narratives(clients, project.project_id) == []  # said so: not queued again by reading

    status, again, _ = api("POST", "/v1/users/ana/narrative/regenerate")  # the guard was let go
    assert status == 202 and again["job_id"] != job.job_id


def _receive_once(queue: PrivateQueue, worker, context) -> int:
    """What Lambda's event source mapping does once: receive, invoke, delete successes; failures become visible
    again at once (Lambda waits for the visibility timeout). The number of failures."""
    messages = queue.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=5,
                                         AttributeNames=["All"]).get("Messages", [])
    if not messages:
        return 0
    event = {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m["Attributes"], "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
        "eventSourceARN": queue.queue_arn, "awsRegion": "us-east-1"} for m in messages]}
    try:
        failed = {f["itemIdentifier"] for f in worker(event, context)["batchItemFailures"]}
    except Exception:  # every record failed: the invocation fails, and Lambda gives the whole batch back
        failed = {m["MessageId"] for m in messages}
    for m in messages:
        if m["MessageId"] in failed:
            queue.sqs.change_message_visibility(QueueUrl=queue.url, ReceiptHandle=m["ReceiptHandle"],
                                                VisibilityTimeout=0)
        else:
            queue.sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=m["ReceiptHandle"])
    return len(failed)


def test_a_job_of_a_user_forgotten_since_records_nothing(clients, project):
    remember(clients, project.project_id, "bo", "User plays chess")
    job = NarrativeJob(project_id=project.project_id, user_id="bo")
    forget.forget_user(clients, project.project_id, "bo")
    narrative.record_failure(clients, job, RuntimeError("late"), 5)
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM processed_jobs WHERE project_id = %s AND tier = %s",
                    (project.project_id, NARRATIVE))
        assert cur.fetchone()[0] == 0


def test_the_worker_handler_records_done_for_a_good_job(clients, project, lambda_context):
    remember(clients, project.project_id, "cy", "User likes jazz", Tier.PROCEDURAL)
    job = NarrativeJob(project_id=project.project_id, user_id="cy")
    assert load_function("NarrativeWorkerFunction")(worker_event(job), lambda_context) == {"batchItemFailures": []}
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        assert processed_jobs.narrative_outcome(cur, project.project_id, job.job_id)["status"] == "done"
