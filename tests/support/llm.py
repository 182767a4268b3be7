"""The one model spy: the offline model, counting and recording every call, able to fail or hold chosen ones."""

from __future__ import annotations

import threading
from collections import Counter

from reverie.llm import OfflineLLM


class SpyLLM:
    """The offline model (or `llm`), seen from outside.

    calls    a count per kind and purpose: "chat:<purpose>", "<purpose>" for structured output, "embed"
    replies  the messages of every chat reply (purpose "reply"), in order
    fail     purpose ("reply", "embed", "extract_semantic", ...) -> the exception such calls raise
    gate     an event the chat replies wait for (10 s at most); `entered` is set when one starts waiting
    timeouts (purpose, timeout_s) of every call: the time budget its caller gave it
    """

    def __init__(self, llm=None, *, fail: dict[str, Exception] | None = None, gate: threading.Event | None = None):
        self.llm = llm or OfflineLLM()
        self.chat_model, self.embedding_model, self.dimensions = (
            self.llm.chat_model, self.llm.embedding_model, self.llm.dimensions)
        self.calls: Counter[str] = Counter()
        self.replies: list[list[dict[str, str]]] = []
        self.timeouts: list[tuple[str, float | None]] = []  # (purpose, the time the caller gave the call)
        self.fail = dict(fail or {})
        self.gate = gate
        self.entered = threading.Event()

    def chat(self, messages, *, purpose="reply", max_tokens=None, timeout_s=None):
        self.calls[f"chat:{purpose}"] += 1
        self.timeouts.append((purpose, timeout_s))
        if purpose == "reply":
            self.replies.append(messages)
            self.entered.set()
            if self.gate is not None:
                self.gate.wait(10)
        self._maybe_fail(purpose)
        return self.llm.chat(messages, purpose=purpose, max_tokens=max_tokens, timeout_s=timeout_s)

    def structured(self, messages, schema, *, purpose, timeout_s=None):
        self.calls[purpose] += 1
        self.timeouts.append((purpose, timeout_s))
        self._maybe_fail(purpose)
        return self.llm.structured(messages, schema, purpose=purpose, timeout_s=timeout_s)

    def embed(self, texts, *, timeout_s=None):
        self.calls["embed"] += 1
        self.timeouts.append(("embed", timeout_s))
        self._maybe_fail("embed")
        return self.llm.embed(texts, timeout_s=timeout_s)

    def _maybe_fail(self, purpose: str) -> None:
        if purpose in self.fail:
            raise self.fail[purpose]

    def total(self) -> int:
        return sum(self.calls.values())
