"""A deterministic, network-free LLM with the same interface as the real one: for local runs, tests and
benchmarks. Embeddings are hashed lexical features; structured output comes from registered "skills"."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from reverie.llm.base import Completion, Embeddings, LLMInvalidOutput, LLMTimeout, Structured, T, Usage
from reverie.llm.tokens import estimate_tokens

__all__ = ["OfflineLLM", "SkillFn", "register_skill", "registered_skills", "unregister_skill"]

SkillFn = Callable[[list[dict[str, str]], type[BaseModel]], Any]
FailWhen = Callable[[str, list[dict[str, str]]], Exception | None]

_SKILLS: dict[str, SkillFn] = {}


def register_skill(purpose: str) -> Callable[[SkillFn], SkillFn]:
    """Decorator: `fn(messages, schema) -> schema instance | dict` answers `structured(..., purpose=purpose)`.

    Registering the same purpose again replaces the earlier skill (module reloads in tests do this)."""

    def decorator(fn: SkillFn) -> SkillFn:
        _SKILLS[purpose] = fn
        return fn

    return decorator


def unregister_skill(purpose: str) -> None:
    _SKILLS.pop(purpose, None)


def registered_skills() -> frozenset[str]:
    return frozenset(_SKILLS)


# --- hashed embeddings -------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\w+")
# Negations ("not", "no", "never") are deliberately kept: they change what a memory means.
_STOP_WORD_LIST = """
    a an and are as at be been being but by can could did do does doing for from had has have having
    he her here hers him his how i if in into is it its itself just me my myself of on or our ours
    she should so than that the their theirs them then there these they this those to too very was
    we were what when where which while who whom why will with would you your yours
"""
_STOP_WORDS = frozenset(_STOP_WORD_LIST.split())
_UNIGRAM_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.5
_TRIGRAM_WEIGHT = 0.3


def _stem(word: str) -> str:
    """Very light suffix stripping, so "lives", "lived", "living" and "live" meet on one feature."""
    if len(word) > 3:
        for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("ly", ""), ("s", "")):
            if not word.endswith(suffix) or len(word) - len(suffix) < 3:
                continue
            stem = word[: -len(suffix)]
            if suffix == "s" and stem.endswith("s"):  # "class", "glass"
                break
            if suffix == "ly" and stem.endswith("i"):  # "family" is not an adverb of "fami"
                break
            word = stem + replacement
            break
        # "live" vs "liv(es)": drop a final silent e so both forms agree.
        if len(word) > 3 and word.endswith("e"):
            word = word[:-1]
    return word


def _terms(text: str) -> list[str]:
    return [_stem(w) for w in _WORD_RE.findall(text.lower()) if w not in _STOP_WORDS]


@lru_cache(maxsize=1 << 16)
def _bucket(feature: str, dimensions: int) -> tuple[int, float]:
    # blake2b, not hash(): str hashes are salted per process and the vectors must be stable across runs.
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, person=b"reverie-embed").digest()
    h = int.from_bytes(digest, "little")
    return h % dimensions, (1.0 if (h >> 63) & 1 else -1.0)


def hashed_embedding(text: str, dimensions: int) -> list[float]:
    """Signed feature hashing of word unigrams, word bigrams and character 3-grams; L2-normalised."""
    vector = [0.0] * dimensions
    words = _terms(text)
    features: list[tuple[str, float]] = [("w:" + w, _UNIGRAM_WEIGHT) for w in words]
    features += [(f"b:{a} {b}", _BIGRAM_WEIGHT) for a, b in itertools.pairwise(words)]
    for w in words:
        padded = f"<{w}>"
        features += [("c:" + padded[i : i + 3], _TRIGRAM_WEIGHT) for i in range(max(1, len(padded) - 2))]
    for feature, weight in features:
        index, sign = _bucket(feature, dimensions)
        vector[index] += sign * weight
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        # Empty (or stop-word-only) text: a fixed unit vector, nearly orthogonal to any real text.
        return [1.0 / math.sqrt(dimensions)] * dimensions
    return [x / norm for x in vector]


# --- chat ----------------------------------------------------------------------------------------------

_MAX_REPLY_CHARS = 300
_BULLET_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(?P<fact>\S.*?)\s*$")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _remembered_lines(messages: list[dict[str, str]]) -> list[str]:
    """Bullet or numbered lines of system messages: that is how prompt builders render recalled memories."""
    lines: list[str] = []
    for message in messages:
        if message.get("role") != "system":
            continue
        for line in str(message.get("content") or "").splitlines():
            match = _BULLET_RE.match(line)
            if match:
                lines.append(match.group("fact").rstrip(". "))
    return lines


def _last_user_message(messages: list[dict[str, str]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def _prompt_tokens(messages: list[dict[str, str]]) -> int:
    # Chat formats add a few tokens of framing per message, as real tokenizers count them.
    return sum(estimate_tokens(str(m.get("content") or "")) + 3 for m in messages)


class OfflineLLM:
    """Deterministic stand-in for a chat + embedding model: same inputs, same outputs, in any process."""

    chat_model: str = "offline-chat"
    embedding_model: str = "offline-hash-embed-v1"

    def __init__(
        self,
        *,
        dimensions: int = 384,
        reply_delay_s: float = 0.0,
        embed_delay_s: float = 0.0,
        structured_delay_s: float = 0.0,
        fail_when: FailWhen | None = None,
    ) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        self.chat_model = "offline-chat"
        self.embedding_model = "offline-hash-embed-v1"
        self.dimensions = dimensions
        self.reply_delay_s = reply_delay_s
        self.embed_delay_s = embed_delay_s
        self.structured_delay_s = structured_delay_s
        self.fail_when = fail_when

    def _maybe_fail(self, operation: str, messages: list[dict[str, str]]) -> None:
        if self.fail_when is not None:
            error = self.fail_when(operation, messages)
            if error is not None:
                raise error

    @staticmethod
    def _sleep(seconds: float, timeout_s: float | None, operation: str) -> None:
        """Take as long as a real model would, and time out as a real client would when that is too long."""
        if timeout_s is not None and seconds > timeout_s:
            time.sleep(max(0.0, timeout_s))
            raise LLMTimeout(f"{operation}: timed out after {timeout_s:.1f}s")
        if seconds > 0:
            time.sleep(seconds)

    def chat(
        self, messages: list[dict[str, str]], *, purpose: str = "reply", max_tokens: int | None = None,
        timeout_s: float | None = None,
    ) -> Completion:
        self._maybe_fail("chat", messages)
        self._sleep(self.reply_delay_s, timeout_s, "chat")
        text = self._reply(messages)
        if max_tokens is not None:
            text = _clip(text, max(1, max_tokens * 4))
        usage = Usage(
            model=self.chat_model,
            prompt_tokens=_prompt_tokens(messages),
            completion_tokens=estimate_tokens(text),
        )
        return Completion(text=text, usage=usage)

    @staticmethod
    def _reply(messages: list[dict[str, str]]) -> str:
        user = _last_user_message(messages)
        user_terms = set(_terms(user))
        facts = _remembered_lines(messages)
        # Mention the remembered lines that share most words with the question; ties keep prompt order.
        ranked = sorted(enumerate(facts), key=lambda item: (-len(user_terms & set(_terms(item[1]))), item[0]))
        chosen = [_clip(fact, 100) for _, fact in ranked[:2]]
        ack = f'You said: "{_clip(user, 80)}".' if user.strip() else "How can I help?"
        text = "I remember that " + "; and that ".join(chosen) + ". " + ack if chosen else "Noted. " + ack
        return _clip(text, _MAX_REPLY_CHARS)

    def structured(self, messages: list[dict[str, str]], schema: type[T], *, purpose: str,
                   timeout_s: float | None = None) -> Structured[T]:
        self._maybe_fail(f"structured:{purpose}", messages)
        self._sleep(self.structured_delay_s, timeout_s, f"structured:{purpose}")
        skill = _SKILLS.get(purpose)
        if skill is None:
            try:
                value = schema.model_validate({})
            except ValidationError:
                raise LLMInvalidOutput(f"offline model has no skill for {purpose!r}") from None
        else:
            value = _validate(skill(messages, schema), schema, purpose)
        usage = Usage(
            model=self.chat_model,
            prompt_tokens=_prompt_tokens(messages),
            completion_tokens=estimate_tokens(value.model_dump_json()),
        )
        return Structured(value=value, usage=usage)

    def embed(self, texts: list[str], *, timeout_s: float | None = None) -> Embeddings:
        self._maybe_fail("embed", [{"role": "user", "content": t} for t in texts])
        self._sleep(self.embed_delay_s, timeout_s, "embed")
        vectors = [hashed_embedding(t, self.dimensions) for t in texts]
        usage = Usage(model=self.embedding_model, prompt_tokens=sum(estimate_tokens(t) for t in texts))
        return Embeddings(vectors=vectors, usage=usage)


def _validate(result: Any, schema: type[T], purpose: str) -> T:
    """Skills may return a model or a plain dict; either way it goes through the schema, like real output."""
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="python", by_alias=True)
    try:
        return schema.model_validate(result)
    except ValidationError as err:
        raise LLMInvalidOutput(
            f"offline skill {purpose!r} returned output that does not fit {schema.__name__}: "
            f"{err.error_count()} error(s)"
        ) from err
