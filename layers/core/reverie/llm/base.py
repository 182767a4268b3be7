"""The LLM interface the rest of Reverie codes against: result types, the `LLM` protocol and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)

__all__ = [
    "LLM",
    "Completion",
    "Embeddings",
    "LLMBadRequest",
    "LLMError",
    "LLMInvalidOutput",
    "LLMRateLimited",
    "LLMTimeout",
    "LLMUnavailable",
    "Structured",
    "T",
    "Usage",
]


@dataclass(frozen=True)
class Usage:
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 1

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage


@dataclass(frozen=True)
class Structured(Generic[T]):
    value: T
    usage: Usage


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    usage: Usage


@runtime_checkable
class LLM(Protocol):
    chat_model: str
    embedding_model: str
    dimensions: int

    # `timeout_s`: the whole call, retries included, must be over within it (a caller's share of its deadline).

    def chat(
        self, messages: list[dict[str, str]], *, purpose: str = "reply", max_tokens: int | None = None,
        timeout_s: float | None = None,
    ) -> Completion: ...

    def structured(
        self, messages: list[dict[str, str]], schema: type[T], *, purpose: str, timeout_s: float | None = None
    ) -> Structured[T]: ...

    def embed(self, texts: list[str], *, timeout_s: float | None = None) -> Embeddings:
        """One batched call for many texts; unit-length vectors of `dimensions` floats, in input order."""
        ...


class LLMError(Exception):
    """Base of every LLM failure; `retryable` tells a queue consumer whether trying later can help."""

    retryable: bool = False

    def __init__(self, message: str = "", *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return f"{self.message} (status {self.status})" if self.status is not None else self.message


class LLMTimeout(LLMError):
    retryable = True


class LLMRateLimited(LLMError):
    retryable = True


class LLMUnavailable(LLMError):
    """5xx answers and connection failures."""

    retryable = True


class LLMBadRequest(LLMError):
    """Other 4xx answers (auth, malformed request): retrying the same call will not help."""

    retryable = False


class LLMInvalidOutput(LLMError):
    """The model answered, but not in a shape we can use (e.g. JSON that does not fit the schema)."""

    retryable = True
