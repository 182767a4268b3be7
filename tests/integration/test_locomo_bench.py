"""The LoCoMo benchmark: it stores a conversation through the API, asks its questions, counts evidence recall for
Reverie and both baselines, and says what is wrong with a bad file in one line."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.support.bench import ROOT, run_bench

SCRIPT = ROOT / "bench" / "locomo.py"
pytestmark = pytest.mark.integration


def _bench():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("locomo_bench", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def _turn(session: int, n: int, speaker: str, text: str) -> dict:
    return {"speaker": speaker, "dia_id": f"D{session}:{n}", "text": text}


def sample(sample_id: str, name: str) -> dict:
    """Two sessions; each question's evidence is a turn with a word no other turn has (or the reply beside it)."""
    return {
        "sample_id": sample_id,
        "conversation": {
            "speaker_a": name, "speaker_b": "Sam",
            "session_1_date_time": "4:20 pm on 3 March, 2022",
            "session_1": [
                _turn(1, 1, name, "I went to a pottery workshop yesterday"),
                _turn(1, 2, "Sam", "Nice! What did you make?"),
                _turn(1, 3, name, "A blue bowl for my grandmother"),
                _turn(1, 4, "Sam", "She will love it"),
            ],
            "session_2_date_time": "3:10 pm on 20 May, 2023",
            "session_2": [
                _turn(2, 1, name, "My cousin adopted a greyhound called Biscuit"),
                _turn(2, 2, "Sam", "Greyhounds are lovely dogs"),
                _turn(2, 3, name, "We are planning a camping trip to the lake", ),
                _turn(2, 4, "Sam", "Bring a warm jacket, the nights get cold"),
            ],
        },
        "qa": [
            {"question": f"What did {name} make at the pottery workshop?", "evidence": ["D1:1", "D1:3"],
             "category": 1, "answer": "a bowl"},
            {"question": "What is the name of the greyhound?", "evidence": ["D2:1"], "category": 4,
             "answer": "Biscuit"},
            {"question": "Where is the camping trip?", "evidence": ["D2:3"], "category": 2, "answer": "the lake"},
            {"question": "An adversarial one", "evidence": ["D1:2"], "category": 5, "answer": ""},
        ],
    }


def test_the_benchmark_counts_reverie_and_both_baselines_over_the_same_turns(tmp_path):
    data, out = tmp_path / "tiny-locomo.json", tmp_path / "recall.json"
    data.write_text(json.dumps([sample("conv-a", "Ana"), sample("conv-b", "Bea")]))
    done = run_bench("locomo.py", str(data), "--tune", "conv-a", "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads(out.read_text())
    assert result["k"] == 10 and result["data"] == "tiny-locomo.json"
    assert result["conversations"] == {"conv-a": {"split": "tune", "turns": 8, "questions": 3},
                                       "conv-b": {"split": "report", "turns": 8, "questions": 3}}
    assert result["turns_merged_with_an_equal_one"] == 0
    for system in ("reverie", "bm25", "vector"):
        summary = result[system]
        assert set(summary) == {"recall", "evidence_share", "by_category", "at_k", "by_conversation"}
        assert set(summary["by_category"]) == {"multi-hop", "temporal", "single-hop"}  # category 5 is not asked
        assert set(summary["by_conversation"]) == {"conv-a", "conv-b"}
        for at in summary["at_k"].values():
            assert 0 <= at["recall"] <= at["evidence_share"] <= 1
    # The verdict covers every conversation and k, and agrees with the figures it is drawn from.
    verdict = result["beats_both_baselines"]
    assert set(verdict) == {"conv-a", "conv-b"} and all(set(per_k) == {"5", "10", "20"} for per_k in verdict.values())
    assert not verdict["conv-a"]["10"]  # eight turns: at k = 10 every system finds everything, nobody beats anybody
    # At k = 5 the words decide: BM25 and Reverie find each question's rare-word turn.
    assert result["bm25"]["at_k"]["5"]["evidence_share"] == 1.0
    assert result["reverie"]["at_k"]["5"]["evidence_share"] == 1.0
    assert result["search_ms"]["p50"] <= result["search_ms"]["p95"]
    assert result["pace_ms"]["before"]["postgres_ms"] > 0 and result["pace_ms"]["after"]["python_ms"] > 0
    assert result["search"]["vector_weight"] == 0.2 and result["embedding_model"] == "offline-hash-embed-v1"


def test_a_missing_or_malformed_file_is_one_line_with_what_to_do(tmp_path):
    missing = run_bench("locomo.py", str(tmp_path / "nope.json"), timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().count("\n") == 0 and "make bench-recall LOCOMO=" in missing.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"not": "locomo"}))
    malformed = run_bench("locomo.py", str(wrong), timeout=60)
    assert malformed.returncode == 2 and "not a LoCoMo file" in malformed.stderr and "Traceback" not in malformed.stderr


def test_questions_count_whole_only_when_every_evidence_turn_is_in_the_top_k():
    bench = _bench()
    found = bench.counts(["D1:1", "D9:9", "D1:3"], {"D1:1", "D1:3"})
    assert found[5] == (True, 1.0)
    found = bench.counts(["D1:1"] + [f"D9:{i}" for i in range(30)] + ["D1:3"], {"D1:1", "D1:3"})
    assert found[5] == (False, 0.5) and found[20] == (False, 0.5)


def test_evidence_ids_written_together_are_split_and_other_categories_left_out():
    bench = _bench()
    raw = sample("conv-a", "Ana")
    raw["qa"].append({"question": "Both?", "evidence": ["D1:1; D2:3"], "category": 1, "answer": ""})
    questions = bench.questions_of(raw)
    assert [q["category"] for q in questions] == [1, 4, 2, 1]
    assert questions[-1]["evidence"] == {"D1:1", "D2:3"}
    turns = bench.turns_of(raw)
    assert [t["session"] for t in turns] == ["session-1"] * 4 + ["session-2"] * 4
    assert turns[0]["text"] == "Ana: I went to a pottery workshop yesterday"
