"""What a tier's reflection decides before anything is written: items learned from jobs and the change each
makes (ADD, UPDATE, SUPERSEDE, NOOP). Plain data; `apply` writes it in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from reverie.domain.fields import storable_text
from reverie.domain.tiers import TierStatus

Action = Literal["ADD", "UPDATE", "SUPERSEDE", "NOOP"]

# Extracted text is stored as a memory: bounded, so a runaway model answer cannot bloat the store.
MAX_ITEM_CHARS = 500


@dataclass
class Item:
    """One memory-to-be, learned from one job (its `job_id` goes on the memory and on its events)."""

    ref: str  # N1, N2, ...: its reference in the reconciliation prompt
    job_id: str
    text: str
    slot: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    importance: float | None = None
    session_id: str | None = None
    valid_from: datetime | None = None
    source_turn_ids: list[str] = field(default_factory=list)
    embedding: list[float] | None = None
    embedding_model: str | None = None


@dataclass
class Change:
    item: Item
    action: Action
    target_id: str | None = None  # a stored memory it updates or supersedes
    target_ref: str | None = None  # or an earlier item of the same batch
    target_valid_from: datetime | None = None
    note: str | None = None  # why, for a NOOP


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    # Jobs whose outcome is settled without a change of their own: (status, reason).
    settled: dict[str, tuple[TierStatus, str]] = field(default_factory=dict)
    # The reason recorded for a job that contributed nothing.
    nothing_reason: str = "nothing to learn in this exchange"

    def only(self, job_ids: set[str]) -> Plan:
        """The plan without what came from other jobs (jobs dropped after it was made)."""
        return Plan(changes=[c for c in self.changes if c.item.job_id in job_ids],
                    settled={k: v for k, v in self.settled.items() if k in job_ids},
                    nothing_reason=self.nothing_reason)


def clean_text(text: str) -> str:
    """A model's extracted text on one line, storable (no NUL or lone surrogate), clipped."""
    text = " ".join(storable_text(str(text)).split())
    return text if len(text) <= MAX_ITEM_CHARS else text[: MAX_ITEM_CHARS - 1].rstrip() + "…"
