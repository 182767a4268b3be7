"""Retrieval quality on LoCoMo, through the public API, against two baselines computed outside Reverie.

    python bench/locomo.py [PATH] [--k 5 10 20] [--tune conv-26]      (make bench-recall LOCOMO=PATH)

Starts the local stack on the embedded engines and, for each conversation (one user each), stores every turn
through POST /v1/memories (infer=false, the episodic tier, its session, `dia_id` and date in metadata), then asks
each question of categories 1-4 through POST /v1/memories/search. Over the same turns and with the same
embeddings it ranks two baselines: BM25 (rank_bm25's Okapi BM25 on stemmed words without stop words, as the
literature runs it) and exact cosine over the vectors alone.

Counted at k = 5, 10 and 20: recall (a question counts when all its evidence turns are in the top k) and the share
of evidence turns found, per category, per conversation and overall. The search's weights were tuned on one
conversation (`--tune`, marked "tune"); the others are reported as they come ("report").

The data set is CC BY-NC and is never copied into the project: pass its path (the development subset sits at
../shared/eval/locomo-dev.json beside a checkout; the full public locomo10.json works the same way). Embeddings
come from the configured model: the offline hashed embeddings unless LLM_BASE_URL is set.
Writes bench/results/recall.json (figures only: the data stays in ../shared/eval).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from measure import RESULTS, ROOT, command, machine, now, paced, percentiles, write

DEFAULT_DATA = ROOT.parent / "shared" / "eval" / "locomo-dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10, 20)
HEADLINE_K = 10
SYSTEMS = ("reverie", "bm25", "vector")
_STOP = (
    "a an and are as at be been being but by can could did do does doing for from had has have having he her here "
    "hers him his how i if in into is it its itself just me my myself of on or our ours she should so than that the "
    "their theirs them then there these they this those to too very was we were what when where which while who "
    "whom why will with would you your yours"
)
STOP_WORDS = frozenset(_STOP.split())


class DataError(Exception):
    """The file is not LoCoMo's shape: a one-line reason."""


# ---------------------------------------------------------------- the data


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The conversations of a LoCoMo file, each as {id, turns: [{dia_id, session, text, when}], questions}."""
    if not path.is_file():
        raise DataError(f"no LoCoMo file at {path}; pass its path (make bench-recall LOCOMO=path/to/locomo10.json)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not JSON ({exc}); pass LoCoMo's locomo10.json or a subset of it") from exc
    if not isinstance(raw, list) or not all(isinstance(s, dict) and "conversation" in s and "qa" in s for s in raw):
        raise DataError(f"{path} is not a LoCoMo file: expected a list of samples with 'conversation' and 'qa'")
    return [{"id": str(s.get("sample_id") or f"sample-{n}"), "turns": turns_of(s), "questions": questions_of(s)}
            for n, s in enumerate(raw)]


def turns_of(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """Every turn of a sample in the order said: "Speaker: words", with a shared photo's caption."""
    conversation = sample["conversation"]
    out = []
    sessions = sorted((k for k, v in conversation.items() if re.fullmatch(r"session_\d+", k) and isinstance(v, list)),
                      key=lambda k: int(k.split("_")[1]))
    for key in sessions:
        when = conversation.get(f"{key}_date_time")
        for turn in conversation[key]:
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shares a photo of {turn['blip_caption']}]"
            out.append({"dia_id": turn["dia_id"], "session": key.replace("_", "-"), "text": text, "when": when})
    return out


def questions_of(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """The questions of categories 1-4 that name their evidence turns (ids such as "D8:6; D9:17" are split)."""
    out = []
    for qa in sample["qa"]:
        if qa.get("category") not in CATEGORIES or not qa.get("evidence"):
            continue
        evidence = {e for item in qa["evidence"] for e in re.split(r"[;,\s]+", str(item)) if e}
        out.append({"question": qa["question"], "category": qa["category"], "evidence": evidence})
    return out


# ---------------------------------------------------------------- the counting


def counts(ranked: list[str], evidence: set[str]) -> dict[int, tuple[bool, float]]:
    """At each k: whether every evidence turn is in the top k, and the share of them that is."""
    return {k: (evidence <= set(ranked[:k]), len(evidence & set(ranked[:k])) / len(evidence)) for k in KS}


class Tally:
    """Per system: each question's counts, kept with its conversation and category."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[str, int, dict[int, tuple[bool, float]]]]] = defaultdict(list)

    def add(self, system: str, conversation: str, category: int, found: dict[int, tuple[bool, float]]) -> None:
        self.rows[system].append((conversation, category, found))

    def summary(self, system: str) -> dict[str, Any]:
        rows = self.rows[system]
        by_conversation = {c: [r for r in rows if r[0] == c] for c in dict.fromkeys(r[0] for r in rows)}
        return {
            "recall": _mean(rows, HEADLINE_K, 0),
            "evidence_share": _mean(rows, HEADLINE_K, 1),
            "by_category": {name: _mean([r for r in rows if r[1] == c], HEADLINE_K, 0)
                            for c, name in CATEGORIES.items() if any(r[1] == c for r in rows)},
            "at_k": {str(k): {"recall": _mean(rows, k, 0), "evidence_share": _mean(rows, k, 1)} for k in KS},
            "by_conversation": {
                c: {str(k): {"recall": _mean(part, k, 0), "evidence_share": _mean(part, k, 1)} for k in KS}
                for c, part in by_conversation.items()
            },
        }


def _mean(rows: list, k: int, index: int) -> float | None:
    values = [float(r[2][k][index]) for r in rows]
    return round(sum(values) / len(values), 3) if values else None


def verdict(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, bool]]:
    """Per conversation and k: whether Reverie's search found more evidence than each baseline, by both counts
    (at least as many whole questions, and a larger share of evidence turns)."""
    out = {}
    for conversation, at in summaries["reverie"]["by_conversation"].items():
        out[conversation] = {}
        for k in at:
            ours = at[k]
            out[conversation][k] = all(
                ours["recall"] >= summaries[b]["by_conversation"][conversation][k]["recall"]
                and ours["evidence_share"] > summaries[b]["by_conversation"][conversation][k]["evidence_share"]
                for b in ("bm25", "vector")
            )
    return out


# ---------------------------------------------------------------- the baselines


def words(text: str, stemmer) -> list[str]:
    return stemmer.stemWords([w for w in re.findall(r"\w+", text.lower()) if w not in STOP_WORDS])


def bm25_ranking(texts: list[str], ids: list[str]):
    """A ranker for one conversation's turns: rank_bm25's BM25Okapi over Snowball-stemmed words."""
    import numpy as np
    import snowballstemmer
    from rank_bm25 import BM25Okapi

    stemmer = snowballstemmer.stemmer("english")
    index = BM25Okapi([words(t, stemmer) or ["<empty>"] for t in texts])

    def rank(question: str, k: int) -> list[str]:
        scores = index.get_scores(words(question, stemmer))
        return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]

    return rank


def vector_ranking(vectors: list[list[float]], ids: list[str]):
    """A ranker by exact cosine over the turns' vectors, the same vectors Reverie stores."""
    import numpy as np

    matrix = np.asarray(vectors, dtype=np.float64)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)

    def rank(query_vector: list[float], k: int) -> list[str]:
        q = np.asarray(query_vector, dtype=np.float64)
        q /= max(float(np.linalg.norm(q)), 1e-12)
        return [ids[i] for i in np.argsort(-(matrix @ q), kind="stable")[:k]]

    return rank


# ---------------------------------------------------------------- main


def analyze(stack) -> None:
    """Planner statistics for the freshly stored rows, as autovacuum gives a deployment within its first minute: the
    searches are timed on the plans a running database would choose."""
    import psycopg2

    with psycopg2.connect(stack.environment["DATABASE_OWNER_URL"]) as conn, conn.cursor() as cur:
        cur.execute("ANALYZE memories, memory_words")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA), help="a LoCoMo JSON file")
    parser.add_argument("--tune", default="conv-26", help="the conversation the search's weights were tuned on")
    parser.add_argument("--out", default=str(RESULTS / "recall.json"))
    args = parser.parse_args(argv)
    try:
        samples = read_samples(Path(args.data))
    except DataError as exc:
        print(f"bench-recall: {exc}", file=sys.stderr)
        return 2

    os.environ.update(POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_METRICS_DISABLED="true",
                      POWERTOOLS_LOG_LEVEL="WARNING", RATE_LIMIT_PER_MINUTE="0", RATE_LIMIT_MODEL_PER_MINUTE="0")
    for key in ("DATABASE_URL", "REDIS_URL", "AWS_ENDPOINT_URL"):
        os.environ.pop(key, None)  # the embedded engines, always
    import logging
    import tempfile
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("reverie.local").setLevel(logging.ERROR)
    from reverie.chat import recall
    from reverie.platform import clients as runtime
    from reverie.platform.observability import logger
    from reverie_client import ReverieClient
    from reverie_dev.backfill import Progress
    from reverie_dev.local.runner import LocalStack

    logger.registered_handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    total = sum(len(s["turns"]) + len(s["questions"]) for s in samples)
    tally, latencies, merged = Tally(), [], 0
    with tempfile.TemporaryDirectory(prefix="reverie-locomo-") as tmp:
        stack = LocalStack(run_schedules=False)
        stack.start(Path(tmp), port=0)
        try:
            clients = runtime.clients()
            llm = clients.llm
            vector_weight, neighbour_weight = recall.weights(clients)
            api = ReverieClient(stack.base_url, stack.api_key, timeout_s=60)
            progress = Progress(total, label="locomo: storing turns and asking questions", unit="steps")
            for sample in samples:
                user = sample["id"]
                for turn in sample["turns"]:
                    stored = api.add_memories(user, [{"role": "user", "content": turn["text"]}], infer=False,
                                              tier="episodic", session_id=turn["session"],
                                              metadata={"dia_id": turn["dia_id"], "when": turn["when"]})
                    # An equal current memory is answered instead of a second copy: that turn's id is lost.
                    merged += stored["memories"][0]["metadata"].get("dia_id") != turn["dia_id"]
                    progress.advance(1, f"{user}: stored")
            analyze(stack)
            # The machine's speed as the searches start and end (measure.paced).
            with paced(clients.settings.database_url) as speed:
                for sample in samples:
                    user, turns = sample["id"], sample["turns"]
                    ids = [t["dia_id"] for t in turns]
                    bm25 = bm25_ranking([t["text"] for t in turns], ids)
                    nearest = vector_ranking(llm.embed([t["text"] for t in turns]).vectors, ids)
                    for question in sample["questions"]:
                        began = time.perf_counter()
                        found = api.search(user, question["question"], limit=max(KS))["results"]
                        latencies.append((time.perf_counter() - began) * 1000)
                        rankings = {
                            "reverie": [m["metadata"].get("dia_id") for m in found],
                            "bm25": bm25(question["question"], max(KS)),
                            "vector": nearest(llm.embed([question["question"]]).vectors[0], max(KS)),
                        }
                        for system, ranked in rankings.items():
                            tally.add(system, user, question["category"], counts(ranked, question["evidence"]))
                        progress.advance(1, f"{user}: asked")
            progress.close()
        finally:
            runtime.reset()
            stack.stop()

    summaries = {system: tally.summary(system) for system in SYSTEMS}
    result = {
        "benchmark": "LoCoMo evidence recall through POST /v1/memories/search, against BM25 and vector-only baselines",
        "date": now(),
        "machine": machine(),
        "command": command(argv),
        "data": Path(args.data).name,
        "conversations": {s["id"]: {"split": "tune" if s["id"] == args.tune else "report", "turns": len(s["turns"]),
                                    "questions": len(s["questions"])} for s in samples},
        "turns_merged_with_an_equal_one": merged,
        "embedding_model": llm.embedding_model,
        "search": {"vector_weight": vector_weight, "neighbour_weight": neighbour_weight,
                   "candidates_per_half": recall.CANDIDATES},
        "k": HEADLINE_K,
        "counted": "recall: questions with all their evidence turns in the top k; evidence_share: the share of "
                   "evidence turns in the top k",
        **summaries,
        "search_ms": percentiles(latencies),
        "pace_ms": speed,
        "beats_both_baselines": verdict(summaries),
    }
    write(args.out, result)
    width = max(len(c) for c in result["conversations"])
    print(f"{'':{width}}  {'split':6}  " + "  ".join(f"{s:>20}" for s in SYSTEMS) + "   (recall / share @10)")
    for conversation, info in result["conversations"].items():
        cells = [summaries[s]["by_conversation"][conversation][str(HEADLINE_K)] for s in SYSTEMS]
        print(f"{conversation:{width}}  {info['split']:6}  "
              + "  ".join(f"{c['recall']:>9.3f} / {c['evidence_share']:.3f}" for c in cells))
    print(f"search p50 {result['search_ms']['p50']} ms, p95 {result['search_ms']['p95']} ms -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
