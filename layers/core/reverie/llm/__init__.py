"""Reverie's model layer: one `LLM` interface (chat, structured output, embeddings) with a real
OpenAI-compatible implementation and a deterministic offline one."""

from __future__ import annotations

from reverie.llm.base import (
    LLM,
    Completion,
    Embeddings,
    LLMBadRequest,
    LLMError,
    LLMInvalidOutput,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    Structured,
    Usage,
)
from reverie.llm.offline import OfflineLLM, register_skill
from reverie.llm.tokens import estimate_tokens, fit_to_budget

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
    "OfflineLLM",
    "OpenAICompatibleLLM",
    "Structured",
    "Usage",
    "estimate_tokens",
    "fit_to_budget",
    "make_llm",
    "register_skill",
]


def __getattr__(name: str):
    # The OpenAI SDK takes about half a second to import: only a process that talks to an endpoint pays for it,
    # and at its first call rather than at every cold start (the offline model never does).
    if name == "OpenAICompatibleLLM":
        from reverie.llm.openai_client import OpenAICompatibleLLM

        return OpenAICompatibleLLM
    raise AttributeError(name)


def make_llm(
    *,
    base_url: str | None,
    api_key: str | None,
    chat_model: str,
    embedding_model: str,
    dimensions: int,
    timeout_s: float,
    max_retries: int,
    offline_reply_delay_s: float = 0,
    offline_embed_delay_s: float = 0,
    offline_structured_delay_s: float = 0,
) -> LLM:
    """No base URL means the offline model; the offline delays are ignored by the real one."""
    if not base_url:
        return OfflineLLM(
            dimensions=dimensions,
            reply_delay_s=offline_reply_delay_s,
            embed_delay_s=offline_embed_delay_s,
            structured_delay_s=offline_structured_delay_s,
        )
    from reverie.llm.openai_client import OpenAICompatibleLLM

    return OpenAICompatibleLLM(
        base_url=base_url,
        api_key=api_key or "",
        chat_model=chat_model,
        embedding_model=embedding_model,
        dimensions=dimensions,
        timeout_s=timeout_s,
        max_retries=max_retries,
    )
