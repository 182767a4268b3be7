"""Settings, read once from the environment into one pydantic object; logic never reads os.environ."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from reverie.domain.tiers import Tier


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    stage: str = "local"

    # Engines. Each can point at an external engine instead of the embedded ones.
    database_url: str | None = None
    database_secret_arn: str | None = None
    redis_url: str | None = None
    aws_endpoint_url: str | None = None
    aws_region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    # Set by Lambda itself: where reverie.after_response registers its extension.
    aws_lambda_runtime_api: str | None = None

    # Messaging: set by template.yaml from the resources it creates.
    reflection_topic_arn: str | None = None
    episodic_queue_url: str | None = None
    semantic_queue_url: str | None = None
    procedural_queue_url: str | None = None
    narrative_queue_url: str | None = None
    episodic_dlq_url: str | None = None
    semantic_dlq_url: str | None = None
    procedural_dlq_url: str | None = None
    narrative_dlq_url: str | None = None

    # The LLM: no base URL means the offline model.
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_api_key_secret_arn: str | None = None
    llm_chat_model: str = "gpt-4o-mini"
    llm_embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int = 384
    llm_timeout_s: float = 20.0
    llm_max_retries: int = 2
    # The offline model can sleep like a real one, for benchmarks.
    offline_reply_delay_ms: float = 0
    offline_embed_delay_ms: float = 0
    offline_extract_delay_ms: float = 0

    # Tier 1 (working memory).
    working_memory_max_turns: int = 20
    working_memory_ttl_s: int = 7 * 24 * 3600

    # Recall and context.
    recall_limit: int = 8
    recall_max_tokens: int = 1500
    narrative_max_age_days: int = 7

    # Auth: how long a key -> project lookup is trusted in process.
    auth_cache_ttl_s: float = 60.0

    # Postgres connections per process: one Lambda instance serves one request at a time,
    # but the chat path runs its lookups concurrently.
    db_pool_max: int = 8

    # The health probe calls a tier stalled when jobs have waited this long and it has written nothing since.
    stall_after_s: int = 900

    # Reflection queues: the receive on which a failing job is recorded dead (template.yaml maxReceiveCount).
    reflect_max_receive_count: int = 5

    # Reflection windows: a tier holds a user's jobs and learns them with one model call once this many have
    # gathered, or once the oldest has waited this long (the window sweep closes those). 1 learns each queue
    # batch as it comes. Model calls per job fall with the window; the time to learn grows with it.
    reflect_window_jobs: int = Field(default=20, ge=1, le=200)
    reflect_window_s: int = Field(default=300, ge=0, le=3600)

    def queue_url(self, tier: Tier | str) -> str | None:
        return getattr(self, f"{Tier(tier).value}_queue_url")

    def dlq_url(self, tier: Tier | str) -> str | None:
        return getattr(self, f"{Tier(tier).value}_dlq_url")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings: for the local runner and tests, which set the environment first."""
    get_settings.cache_clear()
