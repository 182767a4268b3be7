"""The admin function's backfill actions on the real engines: conversations published as jobs that keep their
turns' times, each job once however often it is sent; forgotten users not brought back; the narratives of the users
the backfill made queued, one pending per user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reverie import forget
from reverie.cache import keys
from reverie.domain.tiers import Tier
from reverie.jobs import backfill
from reverie.ops import admin
from reverie.ops.admin import handle
from reverie.reflect import narrative
from tests.support.chat import drain_all_tiers, published
from tests.support.memories import remember
from tests.support.narratives import queued_narratives
from tests.support.reflect import memories_of

pytestmark = pytest.mark.integration

WHEN = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _leave_the_queues_clean(clients, project):
    yield
    drain_all_tiers(clients, project.project_id)
    queued_narratives(clients, project.project_id)


def conversation(user_id: str, session_id: str, *texts: str, at: datetime = WHEN) -> dict:
    turns = []
    for i, text in enumerate(texts):
        turns.append({"role": "user", "content": text, "created_at": (at + timedelta(seconds=2 * i)).isoformat()})
        turns.append({"role": "assistant", "content": "I see.", "created_at": (at + timedelta(seconds=2 * i + 1))
                      .isoformat()})
    return {"user_id": user_id, "session_id": session_id, "turns": turns}


def send(clients, project_id: str, *conversations: dict, **options) -> dict:
    return handle(clients, {"action": "backfill.conversations", "project_id": project_id,
                            "conversations": list(conversations), **options})


def test_conversations_are_published_in_order_with_their_turns_times_and_a_second_send_publishes_nothing(
        clients, project):
    p = project.project_id
    first = conversation("ana", "s1", "I live in Porto.", "My sister is Rosa.")
    later = conversation("ana", "s2", "I moved to Berlin.", at=WHEN + timedelta(days=30))
    answer = send(clients, p, first, later)
    assert answer["done"] == 2
    assert [(r["session_id"], r["turns"], r["jobs"], r["published"], r["skipped"], r["failed"])
            for r in answer["results"]] == [("s1", 4, 1, 1, 0, 0), ("s2", 2, 1, 1, 0, 0)]
    jobs = published(clients, p, Tier.SEMANTIC)
    assert [j.session_id for j in jobs] == ["s1", "s2"] and {j.source for j in jobs} == {"backfill"}
    assert jobs[0].turns[0].created_at == WHEN and jobs[1].turns[0].created_at == WHEN + timedelta(days=30)
    assert all(j.created_at > datetime.now(UTC) - timedelta(minutes=5) for j in jobs)  # made now, said then
    drain_all_tiers(clients, p)

    again = send(clients, p, first, later)
    assert [(r["published"], r["skipped"]) for r in again["results"]] == [(0, 1), (0, 1)]
    assert published(clients, p, Tier.SEMANTIC) == []

    # once the markers are gone (they live 14 days), the outcomes the tiers recorded still say so
    for job in jobs:
        clients.valkey.delete(keys.job_marker(p, job.job_id))
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        for job in jobs:  # the tiers' rows, as a reflector writes them
            cur.execute("INSERT INTO processed_jobs (job_id, tier, project_id, user_id, status) VALUES"
                        " (%s, 'episodic', %s, 'ana', 'done')", (job.job_id, p))
    assert [r["skipped"] for r in send(clients, p, first, later)["results"]] == [1, 1]
    assert published(clients, p, Tier.SEMANTIC) == []


def test_what_is_learned_is_dated_when_it_was_said(clients, project, lambda_context):
    from tests.support.reflect import PrivateQueue

    p = project.project_id
    send(clients, p, conversation("ana", "s1", "I live in Porto and I work as a nurse."))
    [job] = published(clients, p, Tier.EPISODIC)
    semantic = published(clients, p, Tier.SEMANTIC)
    for tier, jobs in ((Tier.EPISODIC, [job]), (Tier.SEMANTIC, semantic)):
        queue = PrivateQueue(clients.sqs)
        for j in jobs:
            queue.send(j)
        queue.drain(tier, clients, lambda_context)
    episodes = memories_of(clients.db, p, "ana", Tier.EPISODIC)
    facts = memories_of(clients.db, p, "ana", Tier.SEMANTIC)
    assert [e["text"][:11] for e in episodes] == ["2023-05-08:"] and facts
    with clients.db.read(p) as cur:
        cur.execute("SELECT DISTINCT valid_from FROM memories WHERE project_id = %s AND user_id = 'ana'", (p,))
        dated = {r["valid_from"] for r in cur.fetchall()}
    assert dated and all(WHEN <= d < WHEN + timedelta(minutes=1) for d in dated)


def test_a_long_conversation_is_split_into_jobs_that_fit_with_ids_that_do_not_change(clients, project):
    long = conversation("ana", "s1", *(f"Day {i}: " + "words " * 400 for i in range(150)))
    jobs = backfill.jobs_for(project.project_id, backfill.read_conversation(long))
    assert len(jobs) > 1 and sum(len(j.turns) for j in jobs) == 300
    assert [j.job_id for j in jobs] == [j.job_id for j in backfill.jobs_for(project.project_id,
                                                                           backfill.read_conversation(long))]
    other = backfill.jobs_for(project.project_id + "x", backfill.read_conversation(long))
    assert not {j.job_id for j in jobs} & {j.job_id for j in other}
    answer = send(clients, project.project_id, long)
    assert answer["results"][0]["published"] == len(jobs)
    assert [j.job_id for j in published(clients, project.project_id, Tier.SEMANTIC)] == [j.job_id for j in jobs]


def test_a_forgotten_user_is_not_brought_back_unless_asked(clients, project):
    p = project.project_id
    remember(clients, p, "ana", "User lives in Porto")
    forget.forget_user(clients, p, "ana")
    answer = send(clients, p, conversation("ana", "s1", "I live in Porto."))
    [result] = answer["results"]
    assert (result["published"], result["skipped"]) == (0, 1) and "forgotten" in result["errors"][0]
    assert published(clients, p, Tier.SEMANTIC) == []
    [result] = send(clients, p, conversation("ana", "s1", "I live in Porto."), include_forgotten=True)["results"]
    assert result["published"] == 1


def test_an_invalid_conversation_is_answered_with_why_and_the_others_go_on(clients, project):
    bad = {"user_id": "ana", "session_id": "s1", "turns": [{"role": "user", "content": "no time"}]}
    answer = send(clients, project.project_id, bad, conversation("bob", "s1", "I like jazz."))
    invalid, good = answer["results"]
    assert invalid["invalid"] and "created_at" in invalid["errors"][0] and invalid["user_id"] == "ana"
    assert good["published"] == 1
    code, message = handle(clients, {"action": "backfill.conversations", "project_id": "nope",
                                     "conversations": [good]})["error"].values()
    assert code == "not_found" and "nope" in message
    assert handle(clients, {"action": "backfill.conversations", "project_id": project.project_id,
                            "conversations": []})["error"]["code"] == "validation_error"


def test_a_batch_stops_at_its_time_budget_and_says_how_far_it_got(clients, project, monkeypatch):
    monkeypatch.setattr(admin, "BACKFILL_BUDGET_S", 0.0)
    answer = send(clients, project.project_id, *(conversation(u, "s1", "I like jazz.") for u in ("a", "b", "c")))
    assert answer["done"] == 1 and len(answer["results"]) == 1


# ---------------------------------------------------------------- narratives


def narratives_action(clients, project_id: str, **options) -> dict:
    return handle(clients, {"action": "backfill.narratives", "project_id": project_id, **options})


def test_narratives_are_queued_for_users_with_enough_memories_once_and_not_again_when_up_to_date(clients, project):
    p = project.project_id
    for user, count in (("ana", 3), ("bob", 1), ("cy", 2)):
        for i in range(count):
            remember(clients, p, user, f"User fact {i} of {user}", embed=False)
    first = narratives_action(clients, p, min_memories=2, limit=1)
    assert (first["total"], first["queued"], first["next_after_user_id"]) == (2, 1, "ana")
    rest = narratives_action(clients, p, min_memories=2, limit=1, after_user_id="ana")
    assert (rest["total"], rest["queued"], rest["next_after_user_id"]) == (None, 1, "cy")
    assert narratives_action(clients, p, min_memories=2, limit=1, after_user_id="cy")["users"] == 0
    assert narratives_action(clients, p, min_memories=2)["pending"] == 2  # one pending job per user
    jobs = queued_narratives(clients, p)
    assert sorted((j.user_id, j.reason) for j in jobs) == [("ana", "backfill"), ("cy", "backfill")]

    for job in jobs:
        narrative.generate(clients, job)
    assert narratives_action(clients, p, min_memories=2) | {"total": None} == {
        "users": 2, "queued": 0, "pending": 0, "current": 2, "total": None, "next_after_user_id": None}
    assert narratives_action(clients, p, min_memories=2, all=True)["queued"] == 2
    assert handle(clients, {"action": "backfill.narratives", "project_id": p,
                            "min_memories": 0})["error"]["code"] == "validation_error"
