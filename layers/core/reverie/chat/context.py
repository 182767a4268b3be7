"""The context a reply is built from (narrative, rules, memories, recent turns, and what the user said that is not
learned yet), and how it is fitted into a token budget with a share for each part. Pure: no I/O."""

from __future__ import annotations

from pydantic import BaseModel, Field

from reverie.domain.memory import PendingTurn, ScoredMemory, Turn
from reverie.llm import estimate_tokens

# What each part may take of the budget; a part that needs less leaves the rest to the others.
SHARES: dict[str, float] = {"narrative": 0.20, "rules": 0.15, "memories": 0.40, "recent_turns": 0.15,
                            "pending": 0.10}
PARTS = tuple(SHARES)


class RecallContext(BaseModel):
    narrative: str | None = None
    narrative_version: int | None = None
    # Looked up, and there is none (not merely unreachable): a kept turn marks so in Valkey (reverie.chat.turn).
    narrative_absent: bool = False
    rules: list[ScoredMemory] = Field(default_factory=list)  # procedural, current
    memories: list[ScoredMemory] = Field(default_factory=list)  # episodic + semantic hybrid hits
    recent_turns: list[Turn] = Field(default_factory=list)  # oldest first
    pending: list[PendingTurn] = Field(default_factory=list)  # said in other sessions, not learned yet; best first
    tokens: int = 0
    # Engines that could not be reached, so their parts are missing: "postgres", "valkey", "embeddings".
    degraded: list[str] = Field(default_factory=list)


def allocate(budget: int, demands: dict[str, int], shares: dict[str, float] = SHARES) -> dict[str, int]:
    """Split `budget` tokens between parts: each gets up to its share, and what a part does not need
    flows to the parts that need more, in proportion to their shares. Never more than a part demands,
    never more than the budget in total; if everything fits, everything is granted."""
    granted = {name: 0 for name in demands}
    left = max(0, budget)
    wanting = [n for n in demands if demands[n] > 0]
    while left > 0 and wanting:
        weights = {n: max(0.0, shares.get(n, 0.0)) for n in wanting}
        if not sum(weights.values()):
            weights = dict.fromkeys(wanting, 1.0)
        total = sum(weights.values())
        given = 0
        for name in wanting:
            # The epsilon keeps a float's last bit (shares summing to 0.9999999999999999) from costing a token.
            take = min(int(left * weights[name] / total + 1e-9), demands[name] - granted[name])
            granted[name] += take
            given += take
        if given == 0:
            # Every offer rounded down to nothing: hand out what is left a token at a time, biggest share first.
            for name in sorted(wanting, key=lambda n: -weights[n]):
                if given == left:
                    break
                granted[name] += 1
                given += 1
        left -= given
        wanting = [n for n in wanting if granted[n] < demands[n]]
    return granted


def clip_to_tokens(text: str, budget: int) -> str:
    """The longest prefix (cut at a word, marked with …) whose estimate fits `budget`; "" if none does."""
    if estimate_tokens(text) <= budget:
        return text
    if budget <= 0:
        return ""
    cut = text[: budget * 4]
    while cut:
        cut = cut.rsplit(" ", 1)[0] if " " in cut else cut[:-1]
        candidate = cut.rstrip() + "…"
        if estimate_tokens(candidate) <= budget:
            return candidate
    return ""


def fit(
    *, narrative: str | None, rules: list[ScoredMemory], memories: list[ScoredMemory], recent_turns: list[Turn],
    max_tokens: int, narrative_version: int | None = None, degraded: list[str] | None = None,
    pending: list[PendingTurn] | None = None, narrative_absent: bool = False,
) -> RecallContext:
    """Fit the parts into `max_tokens` (see `allocate`). Rules, memories and pending turns come best-first and keep
    their order; recent turns keep the newest; the narrative is clipped."""
    pending = pending or []
    demands = {
        "narrative": estimate_tokens(narrative or ""),
        "rules": sum(estimate_tokens(m.text) for m in rules),
        "memories": sum(estimate_tokens(m.text) for m in memories),
        "recent_turns": sum(estimate_tokens(t.content) for t in recent_turns),
        "pending": sum(estimate_tokens(p.text) for p in pending),
    }
    budget = allocate(max_tokens, demands)
    story = clip_to_tokens(narrative, budget["narrative"]) if narrative else ""
    kept_rules = _keep(rules, budget["rules"], lambda m: m.text)
    kept_memories = _keep(memories, budget["memories"], lambda m: m.text)
    kept_turns = list(reversed(_keep(list(reversed(recent_turns)), budget["recent_turns"], lambda t: t.content)))
    kept_pending = _keep(pending, budget["pending"], lambda p: p.text)
    tokens = (estimate_tokens(story) + sum(estimate_tokens(m.text) for m in kept_rules + kept_memories)
              + sum(estimate_tokens(t.content) for t in kept_turns)
              + sum(estimate_tokens(p.text) for p in kept_pending))
    return RecallContext(
        narrative=story or None, narrative_version=narrative_version if story else None, rules=kept_rules,
        memories=kept_memories, recent_turns=kept_turns, pending=kept_pending, tokens=tokens,
        degraded=list(degraded or []), narrative_absent=narrative_absent,
    )


def _keep(items: list, budget: int, text_of) -> list:
    kept, used = [], 0
    for item in items:
        cost = estimate_tokens(text_of(item))
        if used + cost <= budget:
            kept.append(item)
            used += cost
    return kept
