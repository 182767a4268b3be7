"""What a backfill makes of its input, without I/O: LoCoMo sessions as one conversation per speaker, dated at the
session; job ids that depend on what the jobs hold and nothing else; the rate limit's pace."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reverie.domain.errors import ValidationFailed
from reverie.jobs import backfill
from reverie.jobs.message import MAX_JOB_BYTES, encode
from reverie_dev.backfill import InputError, RateLimit, Totals, locomo_conversations, parse_locomo_date

SAMPLE = {
    "sample_id": "conv-1",
    "conversation": {
        "speaker_a": "Ines", "speaker_b": "Tom Ray",
        "session_2_date_time": "11:05 am on 14 April, 2022",
        "session_2": [{"speaker": "Tom Ray", "dia_id": "D2:1", "text": "Back from the coast!"},
                      {"speaker": "Ines", "dia_id": "D2:2", "text": "I bought a kayak.",
                       "blip_caption": "a photo of a red kayak"}],
        "session_1_date_time": "4:20 pm on 3 March, 2022",
        "session_1": [{"speaker": "Ines", "dia_id": "D1:1", "text": "I started a ceramics course yesterday."}],
        "session_3_date_time": "9:00 am on 1 May, 2022",  # a date without a session: nothing to import
    },
}


def test_a_locomo_session_becomes_one_conversation_per_speaker_dated_at_the_session():
    found = list(locomo_conversations(SAMPLE))
    assert [(c["user_id"], c["session_id"]) for c in found] == [
        ("conv-1:ines", "conv-1:s1"), ("conv-1:ines", "conv-1:s2"),
        ("conv-1:tom-ray", "conv-1:s1"), ("conv-1:tom-ray", "conv-1:s2")]
    ines_s2 = found[1]["turns"]
    assert [(t["role"], t["content"], t["turn_id"]) for t in ines_s2] == [
        ("assistant", "Tom Ray: Back from the coast!", "D2:1"),
        ("user", "I bought a kayak. [shares a photo of a red kayak]", "D2:2")]
    assert [t["created_at"] for t in ines_s2] == ["2022-04-14T11:05:00+00:00", "2022-04-14T11:05:01+00:00"]
    assert found[3]["turns"][0]["role"] == "user"  # the other speaker's own turn, in their conversation
    for data in found:
        backfill.read_conversation(data)  # each one valid as the stack reads it


def test_locomo_dates_are_read_as_written_and_an_unknown_form_is_refused():
    assert parse_locomo_date("4:20 pm on 3 March, 2022") == datetime(2022, 3, 3, 16, 20, tzinfo=UTC)
    assert parse_locomo_date("12:07 am on 2 October, 2022") == datetime(2022, 10, 2, 0, 7, tzinfo=UTC)
    with pytest.raises(InputError, match="not like"):
        parse_locomo_date("yesterday")


def _conversation(*texts: str, session: str = "s1") -> backfill.Conversation:
    return backfill.read_conversation({"user_id": "ana", "session_id": session, "turns": [
        {"role": "user", "content": t, "created_at": f"2023-05-08T13:{i:02d}:00Z"} for i, t in enumerate(texts)]})


def test_a_jobs_id_is_made_from_what_it_holds():
    same = backfill.jobs_for("p1", _conversation("I live in Porto.", "I like jazz."))
    assert [j.job_id for j in same] == [j.job_id for j in backfill.jobs_for("p1", _conversation(
        "I live in Porto.", "I like jazz."))]
    others = [backfill.jobs_for("p2", _conversation("I live in Porto.", "I like jazz.")),
              backfill.jobs_for("p1", _conversation("I live in Porto.", "I like jazz!")),
              backfill.jobs_for("p1", _conversation("I live in Porto.", "I like jazz.", session="s2"))]
    assert len({same[0].job_id, *(o[0].job_id for o in others)}) == 4
    assert same[0].turns[0].created_at == datetime(2023, 5, 8, 13, 0, tzinfo=UTC)
    assert same[0].source == "backfill" and same[0].created_at.year > 2023


def test_turns_are_put_in_time_order_and_a_long_conversation_is_split_to_fit():
    turns = backfill.jobs_for("p", backfill.read_conversation({"user_id": "ana", "session_id": "s1", "turns": [
        {"role": "user", "content": "second", "created_at": "2023-05-08T13:01:00Z"},
        {"role": "user", "content": "first", "created_at": "2023-05-08T13:00:00+02:00"}]}))[0].turns
    assert [t.content for t in turns] == ["first", "second"]
    big = backfill.read_conversation({"user_id": "ana", "session_id": "s1", "turns": [
        {"role": "user", "content": "x" * 30_000, "created_at": f"2023-05-08T13:{i % 60:02d}:00Z"}
        for i in range(40)]})
    jobs = backfill.jobs_for("p", big)
    assert len(jobs) > 1 and all(len(encode(j)) <= MAX_JOB_BYTES for j in jobs)
    assert sum(len(j.turns) for j in jobs) == 40


def test_a_turn_without_a_time_is_refused_with_where():
    with pytest.raises(ValidationFailed, match=r"turns\.0\.created_at"):
        backfill.read_conversation({"user_id": "ana", "session_id": "s1", "turns": [{"role": "user",
                                                                                     "content": "hi"}]})


def test_the_rate_limit_keeps_the_average_pace():
    now = [0.0]
    slept = []
    limit = RateLimit(10, clock=lambda: now[0], sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    limit.wait()
    limit.spent(20)  # 20 jobs at once: the next batch waits until 2 s from the start
    limit.wait()
    assert slept == [0.0, 2.0]
    unlimited = RateLimit(0, clock=lambda: 0.0, sleep=lambda s: pytest.fail("no limit, no wait"))
    unlimited.spent(1000)
    unlimited.wait()


def test_totals_count_conversations_jobs_and_failures():
    totals = Totals()
    totals.add({"user_id": "ana", "session_id": "s1", "turns": 4, "jobs": 2, "published": 1, "skipped": 0,
                "failed": 1, "errors": ["job x refused by the topic: too large"]})
    totals.add({"user_id": None, "session_id": None, "turns": 1, "jobs": 0, "invalid": True,
                "errors": ["not a valid conversation: turns.0.created_at: Field required"]})
    assert (totals.conversations, totals.imported, totals.invalid, totals.turns, totals.jobs, totals.published,
            totals.failed) == (2, 1, 1, 5, 2, 1, 1)
    assert totals.failures == ["s1 of ana: job x refused by the topic: too large",
                               "? of ?: not a valid conversation: turns.0.created_at: Field required"]
