"""The one model spy: the offline model, counting and recording every call, able to fail or hold chosen ones."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace

from pydantic import BaseModel

from reverie.llm import OfflineLLM


class SpyLLM:
    """The offline model (or `llm`), seen from outside.

    calls    a count per kind and purpose: "chat:<purpose>", "<purpose>" for structured output, "embed"
    replies  the messages of every chat reply (purpose "reply"), in order
    prompts  (purpose, messages) of every chat and structured call, in order
    taint    text appended to what the model answers (a chat's text; an answer's, a fact's, an episode's...):
             NUL or a lone surrogate, as a real model's JSON can carry
    fail     purpose ("reply", "embed", "extract_semantic", ...) -> the exception such calls raise
    gate     an event the chat replies wait for (10 s at most); `entered` is set when one starts waiting
    timeouts (purpose, timeout_s) of every call: the time budget its caller gave it
    """

    def __init__(self, llm=None, *, fail: dict[str, Exception] | None = None, gate: threading.Event | None = None,
                 taint: str = ""):
        self.llm = llm or OfflineLLM()
        self.chat_model, self.embedding_model, self.dimensions = (
            self.llm.chat_model, self.llm.embedding_model, self.llm.dimensions)
        self.calls: Counter[str] = Counter()
        self.replies: list[list[dict[str, str]]] = []
        self.timeouts: list[tuple[str, float | None]] = []  # (purpose, the time the caller gave the call)
        self.fail = dict(fail or {})
        self.gate = gate
        self.entered = threading.Event()
        self.prompts: list[tuple[str, list[dict[str, str]]]] = []
        self.taint = taint

    def chat(self, messages, *, purpose="reply", max_tokens=None, timeout_s=None):
        self.calls[f"chat:{purpose}"] += 1
        self.timeouts.append((purpose, timeout_s))
        self.prompts.append((purpose, messages))
        if purpose == "reply":
            self.replies.append(messages)
            self.entered.set()
            if self.gate is not None:
                self.gate.wait(10)
        self._maybe_fail(purpose)
        completion = self.llm.chat(messages, purpose=purpose, max_tokens=max_tokens, timeout_s=timeout_s)
        return replace(completion, text=completion.text + self.taint) if self.taint else completion

    def structured(self, messages, schema, *, purpose, timeout_s=None):
        self.calls[purpose] += 1
        self.timeouts.append((purpose, timeout_s))
        self.prompts.append((purpose, messages))
        self._maybe_fail(purpose)
        result = self.llm.structured(messages, schema, purpose=purpose, timeout_s=timeout_s)
        return replace(result, value=self._tainted(result.value)) if self.taint else result

    def embed(self, texts, *, timeout_s=None):
        self.calls["embed"] += 1
        self.timeouts.append(("embed", timeout_s))
        self._maybe_fail("embed")
        return self.llm.embed(texts, timeout_s=timeout_s)

    # The free text of the model's structured answers (not the references and ids it must give back exactly).
    TAINTED_FIELDS = frozenset({"answer", "text", "summary", "name", "who", "reason"})

    def _tainted(self, value):
        if isinstance(value, BaseModel):
            update = {}
            for name in type(value).model_fields:
                item = getattr(value, name)
                if name in self.TAINTED_FIELDS and isinstance(item, str):
                    update[name] = item + self.taint
                elif name in self.TAINTED_FIELDS and isinstance(item, list):
                    update[name] = [i + self.taint if isinstance(i, str) else self._tainted(i) for i in item]
                else:
                    update[name] = self._tainted(item)
            return value.model_copy(update=update)
        if isinstance(value, list):
            return [self._tainted(v) for v in value]
        return value

    def _maybe_fail(self, purpose: str) -> None:
        if purpose in self.fail:
            raise self.fail[purpose]

    def total(self) -> int:
        return sum(self.calls.values())
