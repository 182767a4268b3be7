"""The benchmarks' latest figures against their targets, in one table: bench/results/README.md.

    python bench/report.py        (make bench-report; `make bench` runs every benchmark, then this)

Reads the result files each benchmark wrote (a missing one is listed as not run) and writes the table with the
machine each figure was measured on, its date and the command behind it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import RESULTS, machine, now, pace_text


@dataclass(frozen=True)
class Figure:
    name: str
    file: str
    read: Callable[[dict[str, Any]], Any]  # the measured value, from the file's JSON
    target: str = ""  # as people say it: "<= 15 ms"
    met: Callable[[Any], bool] | None = None  # None: recorded, no target
    unit: str = ""


def _get(*path: str | int) -> Callable[[dict[str, Any]], Any]:
    def read(data: dict[str, Any]) -> Any:
        value: Any = data
        for key in path:
            value = value[key]
        return value

    return read


def _largest(field: str, stat: str) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["sizes"][max(d["sizes"], key=int)][field][stat]


# A row of the machine's pace (measure.pace), beside the timings it was taken with.
PACE = "(fixed Python work / a fixed Postgres statement, as the timings began → ended; lower is faster)"


def _ways(size: str, *ways: str) -> Callable[[dict[str, Any]], str]:
    return lambda d: " vs ".join(f"{d['memories_a_user'][size][way]['p50']:.2f} ms" for way in ways)


def _beats_both(data: dict[str, Any]) -> str:
    verdict = data["beats_both_baselines"]
    won = sum(v for per_k in verdict.values() for v in per_k.values())
    return f"{won} of {sum(len(per_k) for per_k in verdict.values())}"


def _recall_row(system: str) -> Callable[[dict[str, Any]], str]:
    def read(data: dict[str, Any]) -> str:
        return " / ".join(f"{c}: {data[system]['by_conversation'][c]['10']['recall']:.3f}"
                          for c in data["conversations"])

    return read


FIGURES = (
    Figure("chat: overhead a turn adds, p95 (100k memories)", "chat.json", _get("overhead_ms", "p95"), "<= 15 ms",
           lambda v: v <= 15, "ms"),
    Figure(f"chat: the machine's pace as its turns were timed {PACE}", "chat.json", lambda d: pace_text(d["pace_ms"])),
    Figure("chat: POST /v1/turns overhead, p95", "chat.json", _get("turns_overhead_ms", "p95"), unit="ms"),
    Figure("chat: async p95 over synchronous tiers p95", "chat.json", _get("async_over_sync_p95"), "<= 0.15",
           lambda v: v <= 0.15),
    Figure("reflect, realistic mix: model calls per 100 turns", "reflect.json",
           _get("mixes", "realistic", "llm_calls_per_100_turns"), "<= 20", lambda v: v <= 20),
    Figure("reflect, realistic mix: freshness p95 (said -> in a new session's context)", "reflect.json",
           _get("mixes", "realistic", "freshness_ms", "p95"), "<= 1000 ms", lambda v: v <= 1000, "ms"),
    Figure("reflect, burst: model calls per 100 turns", "reflect.json",
           _get("mixes", "burst", "llm_calls_per_100_turns")),
    Figure("reflect: duplicates after redelivery (both mixes)", "reflect.json",
           lambda d: sum(m["duplicates_after_redelivery"] for m in d["mixes"].values()), "0", lambda v: v == 0),
    Figure("LoCoMo recall@10, Reverie's search (tune / report conversation)", "recall.json", _recall_row("reverie")),
    Figure("LoCoMo recall@10, BM25 baseline", "recall.json", _recall_row("bm25")),
    Figure("LoCoMo recall@10, vector-only baseline", "recall.json", _recall_row("vector")),
    Figure("LoCoMo: (conversation, k) pairs where the search beats both baselines", "recall.json", _beats_both,
           "all", lambda v: v.split(" of ")[0] == v.split(" of ")[1]),
    Figure("LoCoMo: search through the API, p95 (published anchors, not measured here: mem0 200 ms, Zep 155 ms)",
           "recall.json", _get("search_ms", "p95"), unit="ms"),
    Figure(f"LoCoMo: the machine's pace as its searches were timed {PACE}", "recall.json",
           lambda d: pace_text(d["pace_ms"])),
    Figure("cheap check: windows of 3 turns with a preference it stops (procedural missed rate)", "check.json",
           _get("windows_of_3_turns", "procedural", "missed_rate")),
    Figure("cheap check: windows of 3 turns with a fact it stops (semantic missed rate)", "check.json",
           _get("windows_of_3_turns", "semantic", "missed_rate")),
    Figure("scale: search p95 at the largest size", "scale.json", _largest("search_ms", "p95"), "<= 20 ms",
           lambda v: v <= 20, "ms"),
    Figure("scale: chat overhead p95 at the largest size", "scale.json", _largest("chat_overhead_ms", "p95"),
           "<= 10 ms", lambda v: v <= 10, "ms"),
    Figure("scale: the heavy user's search p95", "scale.json", _get("heavy_user", "search_ms", "p95"), "<= 50 ms",
           lambda v: v <= 50, "ms"),
    Figure(f"scale: the machine's pace as the largest size was timed {PACE}", "scale.json",
           lambda d: pace_text(d["sizes"][max(d["sizes"], key=int)]["pace_ms"])),
    Figure("scale: inserts a second at the largest size", "scale.json",
           lambda d: d["sizes"][max(d["sizes"], key=int)]["inserts_per_s"], unit="/s"),
    Figure("cold start: the chat function's import", "coldstart.json", _get("functions", "ChatFunction", "import_ms"),
           "< 600 ms", lambda v: v < 600, "ms"),
    Figure("narrative: hot copy read p95", "narrative.json", _get("read_ms", "hot_copy", "p95"), "<= 1 ms",
           lambda v: v <= 1, "ms"),
    Figure("faults: memories lost / duplicated over every scenario", "faults.json",
           lambda d: f"{sum(s['lost'] for s in d['scenarios'])} / {sum(s['duplicated'] for s in d['scenarios'])}",
           "0 / 0", lambda v: v == "0 / 0"),
    Figure("search plans, p50 at 1,000 memories a user: the function's kept plan / the statement as text",
           "search_plans.json", _ways("1000", "function", "text")),
    Figure("search plans, p50 at 5,000 / 12,500 memories a user: one function call against the halves apart",
           "search_plans.json",
           lambda d: " / ".join(_ways(size, "one_function", "apart")(d) for size in ("5000", "12500"))),
    Figure("layer: unzipped size", "layer.json", _get("unzipped_mb"), "<= 250 MB", lambda v: v <= 250, "MB"),
)

COMMANDS = {
    "chat.json": "make bench-chat",
    "reflect.json": "make bench-reflect",
    "recall.json": "make bench-recall",
    "scale.json": "make bench-scale",
    "coldstart.json": "make bench-coldstart",
    "narrative.json": "make bench-narrative",
    "faults.json": "make bench-faults",
    "layer.json": "make layer",
    "check.json": "make bench-check",
    "vector_scan.json": "make bench-vector",
    "search_plans.json": "make bench-plans",
}


def _shown(value: Any, unit: str) -> str:
    if isinstance(value, float):
        value = f"{value:,.2f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    elif isinstance(value, int):
        value = f"{value:,}"
    return f"{value} {unit}".strip() if unit not in ("", "/s") else f"{value}{unit}"


def _date(data: dict[str, Any]) -> str:
    return str(data.get("date") or data.get("measured_at") or data.get("built_at") or "")[:10]


def render(results: Path = RESULTS) -> str:
    loaded: dict[str, dict[str, Any] | None] = {}
    for name in COMMANDS:
        path = results / name
        loaded[name] = json.loads(path.read_text()) if path.is_file() else None
    lines = [
        "# Measured",
        "",
        f"The latest figure of each benchmark against its target, gathered {now()[:10]} by `make bench-report` "
        "from the files beside this one. Each benchmark can run alone with its command; `make bench` runs them all.",
        "",
        "| Figure | Measured | Target | Met | Date | Command |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for figure in FIGURES:
        data = loaded.get(figure.file)
        if data is None:
            lines.append(f"| {figure.name} | not run | {figure.target} | | | `{COMMANDS[figure.file]}` |")
            continue
        try:
            value = figure.read(data)
        except (KeyError, TypeError, ValueError):
            lines.append(f"| {figure.name} | not in {figure.file} | {figure.target} | | {_date(data)} "
                         f"| `{COMMANDS[figure.file]}` |")
            continue
        met = "" if figure.met is None else ("yes" if figure.met(value) else "**no**")
        lines.append(f"| {figure.name} | {_shown(value, figure.unit)} | {figure.target} | {met} | {_date(data)} "
                     f"| `{COMMANDS[figure.file]}` |")
    here = machine()
    # Files recorded on another machine (a platform of another kernel build) say so: their times are not this one's.
    elsewhere = {name: data["machine"]["platform"] for name, data in loaded.items() if data and "machine" in data
                 and data["machine"].get("platform") not in (None, here["platform"])}
    other = (f"; {', '.join(sorted(elsewhere))} recorded on another ({', '.join(sorted(set(elsewhere.values())))})"
             if elsewhere else "")
    lines += [
        "",
        f"Machine: {here['cpu']}, {here['cores']} cores, {here['memory_gb']} GB, Python {here['python']} "
        f"({here['platform']}){other}. Every benchmark runs on the embedded engines (PostgreSQL with pgvector, "
        "Valkey in cluster mode, moto) and the offline model; each result file records its own machine and settings.",
        "",
        "## Files",
        "",
    ]
    for name, data in loaded.items():
        about = (data or {}).get("benchmark", "") if data else "not run yet"
        lines.append(f"- [`{name}`]({name}): {about} (`{COMMANDS[name]}`)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    out = RESULTS / "README.md"
    out.write_text(render(), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
