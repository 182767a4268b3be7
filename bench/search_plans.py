"""Search plans: what the hybrid search's kept plan (migration 0011's function) saves over the statement sent as
text, and where running the two halves apart (memory_search.HALVES_APART_SCOPE) starts to pay.

    python bench/search_plans.py [--quick]        (make bench-plans)

One project, three groups of users bulk-loaded as bench/scale.py loads them (memories recorded at distinct times,
Postgres prewarmed): 100 users of 1,000 memories (bench/scale.py's users at 1M), 4 of 5,000 (bench/chat.py's) and
2 of 12,500. Each search goes through the memory API's handler (POST /v1/memories/search), a query each, in rounds
that alternate the two ways being compared, so both meet the same machine:
- users of 1,000: the function with its kept plan, or the same statement as text (`hybrid(..., reuse_plan=False)`);
- users of 5,000 and 12,500: one function call, or the halves apart (nearest and matching at once, then a blend).
Writes bench/results/search_plans.json: p50/p95 ms of each way for each group.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import uuid

from measure import RESULTS, command, machine, now, percentiles, write

GROUPS = ((1_000, 100), (5_000, 4), (12_500, 2))  # (memories a user, users)
QUICK_GROUPS = ((300, 10), (1_200, 2), (2_500, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small groups, for a check that it runs")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--samples", type=int, default=None, help="searches a round, for each way of each group")
    parser.add_argument("--shared-buffers", default="2GB")
    parser.add_argument("--out", default=str(RESULTS / "search_plans.json"))
    args = parser.parse_args(argv)
    groups = QUICK_GROUPS if args.quick else GROUPS
    rounds = args.rounds or (2 if args.quick else 4)
    samples = args.samples or (20 if args.quick else 150)

    from scale import _rows, bulk_load, quiet_process, start_engines, time_searches

    quiet_process()
    from chat import chat_messages

    from reverie.platform import clients as runtime
    from reverie.store import memory_search
    from reverie.store.projects import create_project
    from reverie_dev.backfill import Progress
    from reverie_dev.local.functions import load_handler
    from reverie_dev.local.template import Template

    stops: list = []
    figures: dict[str, dict] = {}
    try:
        superuser_url, owner_url = start_engines(args.shared_buffers, stops)
        clients = runtime.clients()
        search = load_handler(Template().functions()["MemoryApiFunction"])
        project = "plans-" + uuid.uuid4().hex[:6]
        create_project(clients.db, project)
        members: dict[int, list[str]] = {}
        rows, loaded = [], 0
        for size, count in groups:
            members[size] = [f"u{size}-{i}" for i in range(count)]
            rows += _rows(loaded, size * count, members[size], 5)
            loaded += size * count
        bulk_load(owner_url, project, rows, clients.llm.dimensions, clients.llm.embedding_model,
                  superuser_url=superuser_url)

        hybrid, as_text = memory_search.hybrid, functools.partial(memory_search.hybrid, reuse_plan=False)
        apart_from = memory_search.HALVES_APART_SCOPE
        ways = {
            groups[0][0]: {"function": lambda: setattr(memory_search, "hybrid", hybrid),
                           "text": lambda: setattr(memory_search, "hybrid", as_text)},
            **{size: {"one_function": lambda: setattr(memory_search, "HALVES_APART_SCOPE", 10**12),
                      "apart": lambda: setattr(memory_search, "HALVES_APART_SCOPE", 0)} for size, _ in groups[1:]},
        }
        took: dict[int, dict[str, list[float]]] = {size: {way: [] for way in ways[size]} for size, _ in groups}
        progress = Progress(rounds * 2 * len(groups), label="search plans", unit="runs")
        for n in range(rounds):
            rng = random.Random(n)
            for size, _ in groups:
                order = list(ways[size]) if n % 2 == 0 else list(ways[size])[::-1]
                asked = [(rng.choice(members[size]), m) for _, m in chat_messages(samples, members[size], n)]
                for way in order:
                    ways[size][way]()
                    took[size][way] += time_searches(search, project, asked)
                    memory_search.hybrid, memory_search.HALVES_APART_SCOPE = hybrid, apart_from
                    progress.advance(1, f"round {n + 1}: {size:,} a user, {way}")
        progress.close()
        figures = {str(size): {"users": dict(groups)[size], **{way: percentiles(ms) for way, ms in took[size].items()}}
                   for size, _ in groups}
    finally:
        runtime.reset()
        for stop in reversed(stops):
            stop()

    result = {
        "benchmark": "the hybrid search's kept plan against the statement as text, and its halves apart",
        "date": now(),
        "machine": machine(),
        "command": command(argv),
        "rounds": rounds,
        "searches_per_round": samples,
        "halves_apart_scope": apart_from,
        "memories_a_user": figures,
    }
    write(args.out, result)
    for size, ways_ms in figures.items():
        shown = "  ".join(f"{way} p50 {ms['p50']:6.2f} p95 {ms['p95']:6.2f} ms" for way, ms in ways_ms.items()
                          if way != "users")
        print(f"{int(size):>7,} a user  {shown}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
