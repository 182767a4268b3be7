"""Retrieval quality on LoCoMo: ingest each conversation's turns, ask its questions, count how often the
evidence turns are among the top-k results (evidence recall@k), for hybrid, vector-only and text-only search.

    python bench/recall_eval.py [path/to/locomo.json] [--k 5 10 20]

The data set is CC BY-NC and is never copied into the project; pass its path (the development subset
sits at ../shared/eval/locomo-dev.json beside a checkout, the full public file works the same way).
Embeddings come from the configured model: the offline hashed embeddings by default, or any
OpenAI-compatible endpoint with LLM_BASE_URL / LLM_API_KEY.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "eval" / "locomo-dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
MODES = ("hybrid", "vector", "text")


def turns_of(sample: dict) -> list[dict]:
    conversation = sample["conversation"]
    out = []
    for key, value in conversation.items():
        if not (key.startswith("session_") and isinstance(value, list)):
            continue
        when = conversation.get(f"{key}_date_time")
        for turn in value:
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [shares a photo of {turn['blip_caption']}]"
            out.append({"dia_id": turn["dia_id"], "text": text, "when": when})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--vector-weight", type=float, default=None, help="weight of the vector list in hybrid")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "recall.json"))
    args = parser.parse_args(argv)
    data_path = Path(args.data)
    if not data_path.is_file():
        print(f"no LoCoMo file at {data_path}; pass its path", file=sys.stderr)
        return 2

    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    from reverie.chat import recall
    from reverie.domain.tiers import Tier
    from reverie.platform import clients as runtime
    from reverie.store import memories as store
    from reverie.store.projects import create_project
    from reverie_dev.local import engines as local_engines

    started = local_engines.start()
    os.environ.update(started.environment())
    runtime.reset()  # local_engines.start() migrated the database
    clients = runtime.clients()
    llm, db = clients.llm, clients.db
    project = "locomo"
    create_project(db, project)

    samples = json.loads(data_path.read_text(encoding="utf-8"))
    kmax = max(args.k)
    hits: dict[str, dict[int, dict[int, list[float]]]] = {m: defaultdict(lambda: defaultdict(list)) for m in MODES}
    latencies: dict[str, list[float]] = {m: [] for m in MODES}
    ingested = questions = 0
    try:
        for sample in samples:
            user = sample["sample_id"]
            turns = turns_of(sample)
            vectors = llm.embed([t["text"] for t in turns]).vectors
            with db.transaction(project) as conn, conn.cursor() as cur:
                for turn, vector in zip(turns, vectors, strict=True):
                    store.insert(cur, project, user, store.NewMemory(
                        tier=Tier.EPISODIC, text=turn["text"], embedding=vector, embedding_model=llm.embedding_model,
                        metadata={"dia_id": turn["dia_id"], "when": turn["when"]}))
            ingested += len(turns)
            for qa in sample["qa"]:
                if qa["category"] not in CATEGORIES or not qa.get("evidence"):
                    continue
                questions += 1
                evidence = set(qa["evidence"])
                qvec = llm.embed([qa["question"]]).vectors[0]
                for mode in MODES:
                    started_at = time.perf_counter()
                    found = recall.rank(
                        db, project, user, query=qa["question"] if mode != "vector" else "",
                        embedding=qvec if mode != "text" else None, limit=kmax, candidates=max(50, kmax),
                        **({"vector_weight": args.vector_weight} if args.vector_weight is not None else {}))
                    latencies[mode].append((time.perf_counter() - started_at) * 1000)
                    ranked = [m.metadata.get("dia_id") for m in found]
                    for k in args.k:
                        found_share = len(evidence & set(ranked[:k])) / len(evidence)
                        hits[mode][k][qa["category"]].append(found_share)
                        hits[mode][k][0].append(found_share)
    finally:
        runtime.reset()
        started.stop()

    result = {
        "benchmark": "locomo evidence recall@k",
        "data": data_path.name,
        "conversations": len(samples),
        "memories": ingested,
        "questions": questions,
        "embedding_model": llm.embedding_model,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "recall": {
            mode: {
                f"@{k}": {"all": round(statistics.fmean(hits[mode][k][0]), 3)}
                | {CATEGORIES[c]: round(statistics.fmean(v), 3) for c, v in sorted(hits[mode][k].items()) if c}
                for k in args.k
            }
            for mode in MODES
        },
        "search_ms_p50": {m: round(statistics.median(v), 2) for m, v in latencies.items() if v},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["recall"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
