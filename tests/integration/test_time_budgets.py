"""Every function's work fits its deadline, taken from the Lambda context: the chat's model call gets what the
turn has left (API Gateway gives up at 30 s), and a reflector starts a round of learning only when there is time
to finish it; what it does not reach stays held for the next delivery."""

from __future__ import annotations

import time

import pytest

from reverie.domain.tiers import Tier
from reverie.llm import OfflineLLM
from reverie.platform.deadline import Deadline
from reverie.reflect.consumer import handle_batch
from reverie_dev.local.context import LambdaContext
from tests.support.chat import chat_event, chat_handler, published
from tests.support.clients import Swapped, swapped
from tests.support.llm import SpyLLM
from tests.support.reflect import event, job, outcome

pytestmark = pytest.mark.integration


def test_a_deadline_takes_what_the_context_has_left():
    deadline = Deadline.of(LambdaContext(timeout_s=10), reserve_s=2)
    assert 7.5 < deadline.remaining() <= 8
    assert deadline.budget(3) == 3 and deadline.budget(60) <= 8
    assert Deadline.of(None, default_s=30).remaining() > 29
    assert Deadline.after(0).expired()


def test_the_reply_gets_only_what_the_turn_has_left_and_a_slow_model_is_a_503_in_time(clients, project):
    slow = SpyLLM(OfflineLLM(reply_delay_s=10))
    body = {"user_id": "ana", "session_id": "s1", "message": "hello"}
    with swapped(clients, llm=slow):
        started = time.monotonic()
        answer = chat_handler()(chat_event(project.project_id, body), LambdaContext(timeout_s=4))
        elapsed = time.monotonic() - started
    assert answer["statusCode"] == 503 and elapsed < 4
    [given] = [t for purpose, t in slow.timeouts if purpose == "reply"]
    assert given <= 4 - 1.5
    assert published(clients, project.project_id) == []  # nothing stored from a turn that was not answered


def test_a_reply_within_its_time_is_answered(clients, project):
    spy = SpyLLM()
    body = {"user_id": "ana", "session_id": "s1", "message": "hello"}
    with swapped(clients, llm=spy):
        answer = chat_handler()(chat_event(project.project_id, body), LambdaContext(timeout_s=30))
    assert answer["statusCode"] == 200
    assert [given for purpose, given in spy.timeouts if purpose == "reply"] == [clients.settings.reply_timeout_s]
    published(clients, project.project_id)


def test_a_reflector_without_time_for_a_round_holds_the_jobs_and_the_next_delivery_learns_them(clients, project):
    j = job(project.project_id, "ana", "I live in Porto.")
    llm = SpyLLM()
    reflecting = Swapped(clients, llm=llm)
    short = LambdaContext(timeout_s=int(clients.settings.reflect_round_s))  # less than a round once reserved
    assert handle_batch(Tier.SEMANTIC, event(j), short, reflecting) == {"batchItemFailures": []}
    assert llm.total() == 0 and outcome(clients.db, project.project_id, j.job_id, Tier.SEMANTIC) is None

    later = job(project.project_id, "ana", "I like tea.")
    handle_batch(Tier.SEMANTIC, event(later), LambdaContext(timeout_s=120), reflecting)
    assert outcome(clients.db, project.project_id, j.job_id, Tier.SEMANTIC)["status"] == "done"
    assert all(given is not None and given <= clients.settings.reflect_call_timeout_s
               for _, given in llm.timeouts)
