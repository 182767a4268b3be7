"""`reverie backfill` against the running local stack: a file of past conversations imported through the admin
function with a progress line and a summary, learned by the reflectors dated when it was said, a second run that
publishes nothing; then the narratives of the users it made, served from their hot copy."""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime

import httpx
import pytest

from reverie.cache import keys
from reverie_dev import cli
from reverie_dev.backfill import parse_locomo_date
from reverie_dev.local.template import PROJECT_ROOT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

LOCOMO = PROJECT_ROOT.parent / "shared" / "eval" / "locomo-dev.json"


def run(stack, capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv, "--data-dir", str(stack.data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def new_project(stack) -> dict:
    return stack.invoke("AdminFunction", {"action": "project.create", "project_id": "bf-" + secrets.token_hex(4)})


def get(stack, key: str, path: str, **params) -> httpx.Response:
    return httpx.get(f"{stack.base_url}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def memories(stack, key: str, user_id: str, tier: str) -> list[dict]:
    answer = get(stack, key, "/v1/memories", user_id=user_id, tier=tier, limit=100)
    assert answer.status_code == 200, answer.text
    return answer.json()["memories"]


def turns(user_id: str, session_id: str, when: str, *texts: str) -> str:
    said = [{"role": "user", "content": t, "created_at": f"{when}T09:{i:02d}:00Z"} for i, t in enumerate(texts)]
    return json.dumps({"user_id": user_id, "session_id": session_id, "turns": said})


def test_a_file_of_conversations_is_learned_dated_when_said_and_a_second_run_publishes_nothing(stack, capsys,
                                                                                               tmp_path):
    made = new_project(stack)
    project, key = made["project_id"], made["api_key"]
    lines = [
        turns("ana", "s2", "2022-04-01", "I moved to Berlin last week.", "I work as a nurse now."),
        turns("bob", "s1", "2021-11-20", "I play the cello every Sunday."),
        '{"user_id": "ana", "session_id": "s3", "turns": [{"role": "user", "content": "no time"}]}',
        turns("ana", "s1", "2022-03-01", "I live in Porto and I love the sea."),  # earlier: sent first
    ]
    path = tmp_path / "past.jsonl"
    path.write_text("\n".join(lines) + "\n")

    code, out, err = run(stack, capsys, "backfill", "conversations", str(path), "--project", project)
    assert code == 1, err  # the invalid line
    assert "conversations  4 (1 not valid)" in out
    assert "jobs           3: 3 published, 0 skipped (published before), 0 failed" in out
    assert "100%" in err and "line 3: not a valid conversation: turns.0.created_at: Field required" in err

    episodes = wait_for(lambda: len(found := memories(stack, key, "ana", "episodic")) == 2 and found)
    assert sorted(e["valid_from"][:10] for e in episodes) == ["2022-03-01", "2022-04-01"]
    assert sorted(e["text"][:11] for e in episodes) == ["2022-03-01:", "2022-04-01:"]
    facts = wait_for(lambda: memories(stack, key, "ana", "semantic"))
    assert {f["valid_from"][:10] for f in facts} <= {"2022-03-01", "2022-04-01"}
    berlin = wait_for(lambda: [f for f in memories(stack, key, "ana", "semantic") if "Berlin" in f["text"]])
    assert berlin[0]["valid_from"].startswith("2022-04-01")  # the later session's fact is the current one

    code, out, err = run(stack, capsys, "backfill", "conversations", str(path), "--project", project)
    assert "jobs           3: 0 published, 3 skipped (published before), 0 failed" in out

    code, out, err = run(stack, capsys, "backfill", "narratives", "--project", project, "--min-memories", "1")
    assert code == 0, err
    assert re.search(r"2 users with at least 1 memories: 2 jobs queued, 0 already pending, 0 up to date", out)
    story = wait_for(lambda: (answer := get(stack, key, "/v1/users/ana/narrative")).status_code == 200
                     and answer.json())
    assert story["version"] == 1 and story["citations"]
    assert stack.clients.valkey.exists(keys.narrative(project, "ana"))
    code, out, err = run(stack, capsys, "backfill", "narratives", "--project", project, "--min-memories", "1")
    assert re.search(r"0 jobs queued, 0 already pending, 2 up to date", out), out


@pytest.mark.skipif(not LOCOMO.is_file(), reason=f"the LoCoMo development set is not at {LOCOMO} (it is CC BY-NC and "
                                                 "never copied into the project)")
def test_the_locomo_file_is_learned_at_its_sessions_dates(stack, capsys):
    made = new_project(stack)
    project, key = made["project_id"], made["api_key"]
    code, out, err = run(stack, capsys, "backfill", "conversations", str(LOCOMO), "--project", project,
                         "--limit", "3")
    assert code == 0, err
    assert "conversations  3 (0 not valid)" in out and "3 published" in out

    sample = json.loads(LOCOMO.read_text())[0]
    speaker = sample["conversation"]["speaker_a"]
    dates = [parse_locomo_date(sample["conversation"][f"session_{n}_date_time"]) for n in (1, 2, 3)]
    user = f"{sample['sample_id']}:{speaker.lower()}"
    episodes = wait_for(lambda: len(found := memories(stack, key, user, "episodic")) == 3 and found)
    assert sorted(datetime.fromisoformat(e["valid_from"]) for e in episodes) == dates
    assert all(d < datetime(2024, 1, 1, tzinfo=UTC) for d in dates)

    code, out, err = run(stack, capsys, "backfill", "conversations", str(LOCOMO), "--project", project,
                         "--limit", "3")
    assert code == 0 and "0 published, 3 skipped" in out
