"""Structured-output models the extraction and reconciliation prompts ask the model for.

OpenAI strict mode compatible: every field is required, optional values are `X | None`, no free-form dicts
and no numeric or length constraints (they are checked after parsing instead).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- episodic (tier 2)


class Episode(_Output):
    session: str  # the session reference from the prompt, e.g. "S1"
    when: str | None  # ISO date (or date and time) the episode happened
    who: list[str]  # people involved besides the user
    summary: str  # one or two third-person sentences
    importance: float  # 0 (small talk) .. 1 (life event)


class EpisodicExtraction(_Output):
    episodes: list[Episode]


# ---------------------------------------------------------------- semantic (tier 3)


class Entity(_Output):
    name: str
    type: Literal["person", "place", "organization", "thing", "other"]


class Fact(_Output):
    job: str  # the conversation reference the fact was stated in, e.g. "J2"
    text: str  # one third-person statement: "User lives in Porto"
    # A key for facts that have one current value (home, employer, partner...): a new value replaces the old.
    slot: str | None
    entities: list[Entity]


class SemanticExtraction(_Output):
    facts: list[Fact]


# ---------------------------------------------------------------- procedural (tier 4)


class Rule(_Output):
    job: str
    text: str  # "User prefers short answers"; "Always answer in Portuguese"
    kind: Literal["preference", "habit", "instruction"]
    slot: str | None  # e.g. reply_language, reply_length: a new rule for the slot replaces the old one


class ProceduralExtraction(_Output):
    rules: list[Rule]


# ---------------------------------------------------------------- reconciliation (tiers 3 and 4)

Action = Literal["ADD", "UPDATE", "SUPERSEDE", "NOOP"]


class Decision(_Output):
    item: str  # the new item's reference, e.g. "N1"
    action: Action
    target: str | None  # the known memory (e.g. "M3") or earlier new item (e.g. "N1") it updates or supersedes
    reason: str | None


class Reconciliation(_Output):
    decisions: list[Decision]


EXTRACTION_SCHEMAS: dict[str, type[_Output]] = {
    "episodic": EpisodicExtraction,
    "semantic": SemanticExtraction,
    "procedural": ProceduralExtraction,
}
