"""How often the cheap "nothing to learn" check (reverie.reflect.triage) is wrong, on annotated conversations.

    python bench/check_eval.py [LOCOMO_JSON] [--out bench/results/check.json]

The conversations are LoCoMo's (snap-research/LoCoMo, data/locomo10.json, or the development subset of it): two
people talk over many sessions, and each session comes with annotated observations, the facts it revealed about
each speaker, each citing the turns (dia_ids) it came from. Each speaker in turn plays the user and the other the
assistant, so each session gives two windows of a user's turns, as a reflection window holds them.

The check decides per window, and is wrong in two ways:
- missed: it stops a window that holds something the tier could learn (a lost memory, the costly error);
- spent: it lets through a window that holds nothing (a model call that finds nothing, as without the check).

Truth, per tier:
- semantic: the window's turns are cited by an observation about its user (a fact about them was said);
- procedural: ... by an observation about a preference or a habit (words like likes, prefers, usually, every:
  a proxy, since LoCoMo annotates facts and not rules);
- episodic: the session has a summary (every LoCoMo session has one, so only a missed window can be counted).
The same figures for windows of three consecutive turns of one user (a short conversation's window) and per turn
(one user message alone) are reported as well: stricter tests than whole sessions. Only figures are written,
never the conversations' words.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOCOMO = ROOT.parent / "shared" / "eval" / "locomo-dev.json"
# An observation about a preference or a habit (the procedural tier's kind of memory), by its words.
RULE_LIKE = re.compile(
    r"\b(?:likes|loves to|enjoys|prefers|favou?rite|usually|always|often|regularly|habit|routine|tends? to|"
    r"every (?:day|week|weekend|morning|evening|night|month|year|summer|winter)|passionate about|fan of|hates|"
    r"dislikes)\b", re.I)


def sessions(sample: dict) -> list[tuple[str, list[dict]]]:
    conversation = sample["conversation"]
    found = [(key, conversation[key]) for key in conversation
             if re.fullmatch(r"session_\d+", key) and isinstance(conversation[key], list)]
    return sorted(found, key=lambda item: int(item[0].split("_")[1]))


def cited(sample: dict, session: str) -> dict[str, dict[str, list[str]]]:
    """speaker -> dia_id -> the observations about that speaker citing it."""
    observations = (sample.get("observation") or {}).get(f"{session}_observation") or {}
    found: dict[str, dict[str, list[str]]] = {}
    for speaker, entries in observations.items():
        for entry in entries or []:
            text, evidence = entry[0], entry[1] if len(entry) > 1 else []
            for dia_id in [evidence] if isinstance(evidence, str) else evidence or []:
                found.setdefault(speaker, {}).setdefault(str(dia_id).strip(), []).append(text)
    return found


class Tally:
    def __init__(self) -> None:
        self.missed = self.caught = self.spent = self.spared = 0

    def add(self, truth: bool, passed: bool) -> None:
        if truth and passed:
            self.caught += 1
        elif truth:
            self.missed += 1
        elif passed:
            self.spent += 1
        else:
            self.spared += 1

    def figures(self) -> dict:
        with_something = self.caught + self.missed
        with_nothing = self.spent + self.spared
        total = with_something + with_nothing
        return {
            "units": total, "hold_something": with_something, "hold_nothing": with_nothing,
            "missed": self.missed, "spent": self.spent,
            "wrong": self.missed + self.spent,
            "wrong_rate": round((self.missed + self.spent) / total, 4) if total else None,
            "missed_rate": round(self.missed / with_something, 4) if with_something else None,
            "spent_rate": round(self.spent / with_nothing, 4) if with_nothing else None,
            "calls_saved_rate": round(self.spared / total, 4) if total else None,
        }


def evaluate(samples: list[dict]) -> dict:
    from reverie.reflect import triage

    checks = {"semantic": triage.might_state_a_fact, "procedural": triage.might_state_a_rule,
              "episodic": lambda text: not triage.is_small_talk(text)}
    windows = {tier: Tally() for tier in checks}
    threes = {tier: Tally() for tier in ("semantic", "procedural")}
    turns = {tier: Tally() for tier in ("semantic", "procedural")}
    for sample in samples:
        for session, said in sessions(sample):
            facts = cited(sample, session)
            summary = ((sample.get("session_summary") or {}).get(f"{session}_summary") or "").strip()
            for user in {turn["speaker"] for turn in said}:
                mine = [turn for turn in said if turn["speaker"] == user]
                about = facts.get(user, {})
                truth = {
                    "semantic": [turn["dia_id"] in about for turn in mine],
                    "procedural": [any(RULE_LIKE.search(o) for o in about.get(turn["dia_id"], [])) for turn in mine],
                }
                for tier, check in checks.items():
                    passed = [check(turn.get("text") or "") for turn in mine]
                    holds = bool(summary) if tier == "episodic" else any(truth[tier])
                    windows[tier].add(holds, any(passed))
                    if tier in turns:
                        for start in range(0, len(mine), 3):
                            threes[tier].add(any(truth[tier][start:start + 3]), any(passed[start:start + 3]))
                        for is_true, did_pass in zip(truth[tier], passed, strict=True):
                            turns[tier].add(is_true, did_pass)
    return {
        "windows": {tier: tally.figures() for tier, tally in windows.items()},
        "windows_of_3_turns": {tier: tally.figures() for tier, tally in threes.items()},
        "turns": {tier: tally.figures() for tier, tally in turns.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("locomo", nargs="?", default=str(DEFAULT_LOCOMO), help="a LoCoMo JSON file")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "check.json"))
    args = parser.parse_args(argv)
    path = Path(args.locomo)
    samples = json.loads(path.read_text(encoding="utf-8"))
    figures = evaluate(samples)
    result = {
        "benchmark": "the cheap check before a reflection call (reverie.reflect.triage) against LoCoMo's "
                     "annotated observations",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "data": {"file": path.name, "conversations": len(samples),
                 "sessions": sum(len(sessions(s)) for s in samples)},
        "unit": "a window is one speaker's turns in one session (the other speaker plays the assistant); "
                "missed: stopped although it holds something; spent: let through although it holds nothing",
        **figures,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({part: {tier: {k: f[k] for k in ("units", "hold_something", "missed", "spent")}
                             for tier, f in figures[part].items()} for part in figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
