"""Settings, read once from the environment into one pydantic object; logic never reads os.environ."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reverie.domain.tiers import Tier


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    stage: str = "local"

    # Engines. Each can point at an external engine instead of the embedded ones.
    # Postgres: a full DATABASE_URL (local and simple setups), or the host, port and database name (in AWS, the
    # RDS Proxy endpoint) with the credentials (username, password) from the DATABASE_SECRET_ARN secret.
    database_url: str | None = None
    database_host: str | None = None
    database_port: int = 5432
    database_name: str = "postgres"
    database_secret_arn: str | None = None
    database_sslmode: str = "require"
    # Migrations run as the tables' owner; the functions as a login role that is not (row-level security binds
    # it). DATABASE_OWNER_URL, or the DATABASE_OWNER_SECRET_ARN secret's credentials (with the host above), are
    # the owner's, read only to migrate; unset, migrations use the functions' own connection.
    database_owner_url: str | None = None
    database_owner_secret_arn: str | None = None
    redis_url: str | None = None
    # A Valkey cluster (ElastiCache Serverless is one): true or false, or "auto" to ask the server at first use.
    redis_cluster: bool | None = None
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
    # One model call attempt; a call's retries go on only while its budget lasts.
    llm_timeout_s: float = 20.0
    llm_max_retries: int = 2
    # What each purpose may spend on the model (retries included), within what the invocation has left. The
    # chat and the memory API answer through API Gateway, which gives up at 30 s.
    reply_timeout_s: float = 20.0
    query_embed_timeout_s: float = 3.0
    answer_timeout_s: float = 20.0
    reflect_call_timeout_s: float = 60.0
    # A reflector starts a round of learning only with this much of its invocation left; the jobs it does not
    # reach stay held, and the next delivery or window sweep learns them.
    reflect_round_s: float = 45.0
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
    # Hybrid search (reverie.chat.recall): the vector list's share of a candidate's score (the full-text list has the
    # rest); unset, the embedding model's default (0.2 for the offline hashed embeddings, 0.5 for an endpoint's).
    # And the share of a hit's score its session neighbours (the memories stored just before and after) gain.
    search_vector_weight: float | None = Field(default=None, ge=0, le=1)
    search_neighbour_weight: float = Field(default=0.5, ge=0, le=1)
    # What the user said and the tiers have not learned yet (reverie.cache.pending), recalled across sessions: the
    # newest turns kept per user, and how long the list lives after the user's last turn.
    pending_max_turns: int = Field(default=50, ge=0, le=500)
    pending_ttl_s: int = Field(default=24 * 3600, ge=60)
    narrative_max_age_days: int = 7

    # Rate limits per project, per minute (0: no limit). Every request counts in the first; a request that spends
    # model calls (POST /v1/chat, /v1/memories/ask, /v1/memories/deep-query, narrative regenerate, POST /v1/memories
    # with infer=true, and the MCP tools that do the same) also counts in the second. Over either: 429.
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    rate_limit_model_per_minute: int = Field(default=300, ge=0)

    # Auth: how long a key -> project lookup is trusted in process.
    auth_cache_ttl_s: float = 60.0

    # Postgres connections per process: one Lambda instance serves one request at a time,
    # but the chat path runs its lookups concurrently.
    db_pool_max: int = 8

    # Schema migrations: a statement waiting longer than this for a lock (another migration, or a long
    # transaction on a table being altered) fails, and so does one that runs longer than the statement timeout.
    migrate_lock_timeout_s: float = Field(default=30.0, gt=0)
    migrate_statement_timeout_s: float = Field(default=240.0, gt=0)

    # The health probe calls a tier stalled when jobs have waited this long and it has written nothing since.
    stall_after_s: int = 900

    # Reflection queues: the receive on which a failing job is recorded dead (template.yaml maxReceiveCount).
    reflect_max_receive_count: int = 5
    # How long a held job waits after a failed window before its next attempt counts: a queued message's
    # visibility timeout (template.yaml), so a held job gets the retry budget of a queued one.
    reflect_retry_after_s: float = 720.0

    # Reflection windows: a tier holds a user's jobs and learns them with one model call once this many have
    # gathered, or once the oldest has waited this long (the window sweep closes those). 1 learns each queue
    # batch as it comes. Model calls per job fall with the window; the time to learn grows with it.
    reflect_window_jobs: int = Field(default=20, ge=1, le=200)
    reflect_window_s: int = Field(default=600, ge=0, le=3600)
    # ...or once the tier has received nothing of the user for this long (the conversation paused), so a finished
    # conversation is learned soon and an active one in one piece. 0: no such close.
    reflect_quiet_s: int = Field(default=60, ge=0, le=3600)
    # Before a tier's model call, a cheap check of the window's words (reverie.reflect.triage): a window with nothing
    # the tier can use (no fact, no preference or instruction, only small talk) is recorded empty without the call.
    # It reads English; words it cannot read are always given the call. false: every window gets its call.
    reflect_cheap_check: bool = True

    @field_validator("aws_endpoint_url", mode="before")
    @classmethod
    def _empty_endpoint_is_none(cls, value):
        # template.yaml declares AWS_ENDPOINT_URL empty in AWS (so `sam local invoke` can set it): empty is unset.
        return value or None

    @field_validator("redis_cluster", mode="before")
    @classmethod
    def _auto(cls, value):
        return None if isinstance(value, str) and value.strip().lower() in ("", "auto") else value

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
