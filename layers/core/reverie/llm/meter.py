"""A model that remembers the usage of every call made through it, so the calls are written to the cost
ledger in the same transaction as the work they paid for (or with the failure, when the work is not kept)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reverie.llm.base import LLM, Completion, Embeddings, Structured, T, Usage


@dataclass(frozen=True)
class Call:
    purpose: str
    usage: Usage


class Meter:
    """An LLM that remembers the usage of every call made through it, to be written to the ledger in the
    same transaction as the work it paid for (or with the failure, when the work is not committed)."""

    def __init__(self, llm: LLM, time_for: Callable[[str], float | None] | None = None):
        """`time_for(purpose)`: how long a call for that purpose may take, retries included (None: no limit)."""
        self.llm = llm
        self.time_for = time_for or (lambda purpose: None)
        self.calls: list[Call] = []

    @property
    def chat_model(self) -> str:
        return self.llm.chat_model

    @property
    def embedding_model(self) -> str:
        return self.llm.embedding_model

    @property
    def dimensions(self) -> int:
        return self.llm.dimensions

    def chat(self, messages: list[dict[str, str]], *, purpose: str = "reply", max_tokens: int | None = None
             ) -> Completion:
        completion = self.llm.chat(messages, purpose=purpose, max_tokens=max_tokens, timeout_s=self.time_for(purpose))
        self.calls.append(Call(purpose, completion.usage))
        return completion

    def structured(self, messages: list[dict[str, str]], schema: type[T], *, purpose: str) -> Structured[T]:
        result = self.llm.structured(messages, schema, purpose=purpose, timeout_s=self.time_for(purpose))
        self.calls.append(Call(purpose, result.usage))
        return result

    def embed(self, texts: list[str]) -> Embeddings:
        result = self.llm.embed(texts, timeout_s=self.time_for("embed"))
        self.calls.append(Call("embed", result.usage))
        return result

    def take(self) -> list[Call]:
        """The calls not yet written, and forget them (so a retry within a process never writes twice)."""
        calls, self.calls = self.calls, []
        return calls
