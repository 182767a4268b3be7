"""The real LLM: any OpenAI-compatible endpoint through the `openai` SDK, whose own retry with backoff
(honouring Retry-After) handles 429s, 5xx answers, timeouts and dropped connections."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import openai
from pydantic import BaseModel, ValidationError

from reverie.llm.base import (
    Completion,
    Embeddings,
    LLMBadRequest,
    LLMError,
    LLMInvalidOutput,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    Structured,
    T,
    Usage,
)

try:  # present since openai 1.40, the SDK's own strict-mode conversion
    from openai.lib._pydantic import to_strict_json_schema as _sdk_strict_schema
except ImportError:  # pragma: no cover - older or re-arranged SDKs
    _sdk_strict_schema = None

__all__ = ["STRUCTURED_MODES", "OpenAICompatibleLLM"]

STRUCTURED_MODES = ("json_schema", "json_object")
# The embeddings endpoint takes at most 2048 inputs per request.
_MAX_EMBED_BATCH = 2048
_MAX_ERROR_CHARS = 300
_SECRET_RE = re.compile(r"\b(sk-|key-)[A-Za-z0-9_\-*.]{4,}")
_FENCE_RE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(?P<body>.*?)\s*```\s*$", re.DOTALL)
_SCHEMA_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]")

_R = TypeVar("_R")


@lru_cache(maxsize=256)
def _strict_schema(schema: type[BaseModel]) -> tuple[dict[str, Any], bool]:
    if _sdk_strict_schema is not None:
        return _sdk_strict_schema(schema), True
    return schema.model_json_schema(), False  # pragma: no cover


def _schema_name(schema: type[BaseModel]) -> str:
    # The API only accepts [a-zA-Z0-9_-]{1,64}; generic models are named like "Page[Fact]".
    return _SCHEMA_NAME_RE.sub("_", schema.__name__)[:64] or "Output"


def _strip_fences(text: str) -> str:
    """Models in json_object mode (and some compatible servers) still wrap JSON in ``` fences."""
    match = _FENCE_RE.match(text)
    return match.group("body") if match else text


class OpenAICompatibleLLM:
    """Chat, structured output and embeddings against one OpenAI-compatible base URL, with one SDK client
    made once per instance (so a warm Lambda reuses its connections)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        chat_model: str,
        embedding_model: str,
        dimensions: int,
        timeout_s: float = 20.0,
        max_retries: int = 3,
        structured_mode: str = "json_schema",
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required (use OfflineLLM when there is none)")
        if structured_mode not in STRUCTURED_MODES:
            raise ValueError(f"structured_mode must be one of {STRUCTURED_MODES}, not {structured_mode!r}")
        if dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        self.chat_model = chat_model
        self.embedding_model = embedding_model
        self.dimensions = dimensions
        self.structured_mode = structured_mode
        self._api_key = api_key or ""
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._client = openai.OpenAI(
            base_url=base_url,
            # Self-hosted compatible servers often need no key, but the SDK refuses an empty one.
            api_key=api_key or "not-needed",
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleLLM(base_url={str(self._client.base_url)!r}, chat_model={self.chat_model!r}, "
            f"embedding_model={self.embedding_model!r}, dimensions={self.dimensions})"
        )

    def close(self) -> None:
        self._client.close()

    # --- calls ---------------------------------------------------------------------------------------

    def chat(
        self, messages: list[dict[str, str]], *, purpose: str = "reply", max_tokens: int | None = None,
        timeout_s: float | None = None,
    ) -> Completion:
        extra: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
        client = self._within("chat", timeout_s)
        response = self._call(
            "chat",
            lambda: client.chat.completions.create(model=self.chat_model, messages=messages, **extra),
        )
        message, _ = _first_message(response)
        return Completion(text=message.content or "", usage=self._chat_usage(response))

    def structured(self, messages: list[dict[str, str]], schema: type[T], *, purpose: str,
                   timeout_s: float | None = None) -> Structured[T]:
        client = self._within(f"structured:{purpose}", timeout_s)
        if self.structured_mode == "json_schema":
            json_schema, strict = _strict_schema(schema)
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(schema),
                    "schema": copy.deepcopy(json_schema),
                    "strict": strict,
                },
            }
            prompt = messages
        else:
            response_format = {"type": "json_object"}
            prompt = _with_schema_instruction(messages, schema)
        response = self._call(
            f"structured:{purpose}",
            lambda: client.chat.completions.create(
                model=self.chat_model, messages=prompt, response_format=response_format
            ),
        )
        message, finish_reason = _first_message(response)
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise LLMInvalidOutput(f"structured:{purpose}: model refused: {_clip(str(refusal))}")
        content = message.content or ""
        try:
            value = schema.model_validate_json(_strip_fences(content))
        except ValidationError as err:
            raise LLMInvalidOutput(
                f"structured:{purpose}: output does not fit {schema.__name__} "
                f"({err.error_count()} error(s), finish_reason={finish_reason})"
            ) from err
        return Structured(value=value, usage=self._chat_usage(response))

    def embed(self, texts: list[str], *, timeout_s: float | None = None) -> Embeddings:
        if not texts:
            return Embeddings(vectors=[], usage=Usage(model=self.embedding_model, calls=0))
        client = self._within("embed", timeout_s)
        extra: dict[str, Any] = {"encoding_format": "float"}
        # Only the text-embedding-3 family can shorten its vectors; other models reject the parameter.
        if self.embedding_model.startswith("text-embedding-3"):
            extra["dimensions"] = self.dimensions
        vectors: list[list[float]] = []
        prompt_tokens = 0
        calls = 0
        for start in range(0, len(texts), _MAX_EMBED_BATCH):
            # The API rejects empty strings; a lone space embeds as "nothing" just as well.
            batch = [t if t.strip() else " " for t in texts[start : start + _MAX_EMBED_BATCH]]
            response = self._call(
                "embed",
                lambda batch=batch: client.embeddings.create(
                    model=self.embedding_model, input=batch, **extra
                ),
            )
            vectors += self._vectors(response, len(batch))
            usage = getattr(response, "usage", None)
            prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
            calls += 1
        return Embeddings(
            vectors=vectors, usage=Usage(model=self.embedding_model, prompt_tokens=prompt_tokens, calls=calls)
        )

    # --- helpers -------------------------------------------------------------------------------------

    def _vectors(self, response: Any, expected: int) -> list[list[float]]:
        try:
            data = sorted(response.data, key=lambda item: item.index)
            raw = [list(item.embedding) for item in data]
            indices = [item.index for item in data]
        except (AttributeError, TypeError) as err:
            raise LLMInvalidOutput("embed: malformed embeddings response") from err
        if indices != list(range(expected)):
            raise LLMInvalidOutput(f"embed: expected {expected} vectors, got indices {indices[:10]}")
        vectors = []
        for index, vector in enumerate(raw):
            if len(vector) != self.dimensions:
                raise LLMInvalidOutput(
                    f"embed: vector {index} has {len(vector)} dimensions, expected {self.dimensions} "
                    f"(model {self.embedding_model!r})"
                )
            norm = math.sqrt(sum(x * x for x in vector))
            if norm == 0.0 or not math.isfinite(norm):
                raise LLMInvalidOutput(f"embed: vector {index} cannot be normalised (norm {norm})")
            vectors.append([x / norm for x in vector])
        return vectors

    def _chat_usage(self, response: Any) -> Usage:
        usage = getattr(response, "usage", None)
        return Usage(
            model=self.chat_model,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )

    def _within(self, operation: str, timeout_s: float | None) -> openai.OpenAI:
        """The SDK client for a call that must finish within `timeout_s` (retries included): each attempt gets
        the configured timeout or the whole budget if that is less, and only as many retries as fit."""
        if timeout_s is None:
            return self._client
        if timeout_s <= 0:
            raise LLMTimeout(f"{operation}: no time left for the call")
        attempt_s = min(self._timeout_s, timeout_s)
        retries = max(0, min(self._max_retries, int(timeout_s // attempt_s) - 1))
        return self._client.with_options(timeout=attempt_s, max_retries=retries)

    def _call(self, operation: str, fn: Callable[[], _R]) -> _R:
        try:
            return fn()
        except openai.OpenAIError as err:
            raise self._map_error(operation, err) from err

    def _map_error(self, operation: str, err: openai.OpenAIError) -> LLMError:
        status: int | None = getattr(err, "status_code", None)
        detail = f"{operation}: {type(err).__name__}: {self._redact(str(getattr(err, 'message', err)))}"
        # APITimeoutError subclasses APIConnectionError, so it is tested first.
        if isinstance(err, openai.APITimeoutError):
            return LLMTimeout(detail)
        if isinstance(err, openai.APIConnectionError):
            return LLMUnavailable(detail)
        if isinstance(err, openai.RateLimitError):
            return LLMRateLimited(detail, status=status)
        if isinstance(err, openai.APIStatusError):
            if err.status_code >= 500:
                return LLMUnavailable(detail, status=status)
            if err.status_code == 408:  # the server timed out waiting: as transient as our own timeout
                return LLMTimeout(detail, status=status)
            return LLMBadRequest(detail, status=status)
        if isinstance(err, openai.APIResponseValidationError):
            return LLMInvalidOutput(detail, status=status)
        return LLMError(detail, status=status)

    def _redact(self, text: str) -> str:
        if len(self._api_key) >= 4:
            text = text.replace(self._api_key, "[redacted]")
        return _clip(_SECRET_RE.sub(r"\1[redacted]", text))


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _first_message(response: Any) -> tuple[Any, str | None]:
    try:
        choice = response.choices[0]
        return choice.message, getattr(choice, "finish_reason", None)
    except (AttributeError, IndexError, TypeError, KeyError) as err:
        raise LLMInvalidOutput("malformed chat completion response (no choices)") from err


def _with_schema_instruction(messages: list[dict[str, str]], schema: type[BaseModel]) -> list[dict[str, str]]:
    """json_object mode cannot enforce a schema, so the schema goes into the system prompt instead."""
    instruction = (
        "Reply with a single JSON object and nothing else. It must validate against this JSON schema:\n"
        + json.dumps(schema.model_json_schema(), separators=(",", ":"), ensure_ascii=False)
    )
    if messages and messages[0].get("role") == "system":
        first = {**messages[0], "content": f"{messages[0].get('content', '')}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]
