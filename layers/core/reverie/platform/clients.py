"""Clients for the engines, made once per process and handed to the logic (never made per record)."""

from __future__ import annotations

import json
import threading
from functools import cached_property
from urllib.parse import quote

import boto3
import redis
from botocore.config import Config

from reverie.llm import LLM, make_llm
from reverie.platform.config import Settings, get_settings
from reverie.store import Database, check_schema


class Clients:
    """Lazy: a function pays only for the clients it touches. The database is checked against the code's
    schema version on first use, so a function started against an old schema fails loudly, naming the fix."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self._db: Database | None = None
        self._db_lock = threading.Lock()

    @property
    def db(self) -> Database:
        if self._db is None:
            with self._db_lock:
                if self._db is None:
                    db = Database(self.database_url(), max_connections=self.settings.db_pool_max)
                    try:
                        check_schema(db)
                    except Exception:
                        db.close()
                        raise  # not cached: once migrated, the next invocation recovers
                    self._db = db
        return self._db

    @cached_property
    def valkey(self) -> redis.Redis:
        if not self.settings.redis_url:
            raise RuntimeError("REDIS_URL is not set")
        return redis.Redis.from_url(
            self.settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
        )

    def aws(self, service: str):
        return _aws_client(service, self.settings.aws_endpoint_url, self.settings.aws_region)

    @cached_property
    def sns(self):
        return self.aws("sns")

    @cached_property
    def sqs(self):
        return self.aws("sqs")

    @cached_property
    def cloudwatch(self):
        return self.aws("cloudwatch")

    @cached_property
    def llm(self) -> LLM:
        s = self.settings
        api_key = s.llm_api_key.get_secret_value() if s.llm_api_key else None
        if s.llm_base_url and not api_key and s.llm_api_key_secret_arn:
            api_key = self._secret(s.llm_api_key_secret_arn)
        return make_llm(
            base_url=s.llm_base_url, api_key=api_key or "none", chat_model=s.llm_chat_model,
            embedding_model=s.llm_embedding_model, dimensions=s.embedding_dimensions,
            timeout_s=s.llm_timeout_s, max_retries=s.llm_max_retries,
            offline_reply_delay_s=s.offline_reply_delay_ms / 1000,
            offline_embed_delay_s=s.offline_embed_delay_ms / 1000,
            offline_structured_delay_s=s.offline_extract_delay_ms / 1000,
        )

    def migration_database(self) -> Database:
        """A connection that does not insist on the current schema (migrating is what brings it there)."""
        return Database(self.database_url(), max_connections=1)

    def database_url(self) -> str:
        s = self.settings
        if s.database_url:
            return s.database_url
        if s.database_secret_arn:
            secret = json.loads(self._secret(s.database_secret_arn))
            return (
                f"postgresql://{quote(secret['username'])}:{quote(secret['password'])}@{secret['host']}:"
                f"{secret.get('port', 5432)}/{secret.get('dbname', 'postgres')}?sslmode=require"
            )
        raise RuntimeError("DATABASE_URL (or DATABASE_SECRET_ARN) is not set")

    def _secret(self, arn: str) -> str:
        from aws_lambda_powertools.utilities import parameters

        return parameters.get_secret(arn, boto3_client=self.aws("secretsmanager"), max_age=300)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if "valkey" in self.__dict__:
            self.valkey.close()


def _aws_client(service: str, endpoint_url: str | None, region: str):
    return boto3.client(
        service, endpoint_url=endpoint_url, region_name=region,
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5),
    )


_clients: Clients | None = None
_lock = threading.Lock()


def clients() -> Clients:
    """The process's clients (one set per Lambda instance, or per local runner)."""
    global _clients
    if _clients is None:
        with _lock:
            if _clients is None:
                _clients = Clients()
    return _clients


def reset() -> None:
    """Drop the process's clients and settings: for the local runner and tests that change the environment."""
    global _clients
    from reverie.platform import after_response
    from reverie.platform.config import reset_settings

    # Work deferred past a response belongs to the clients it was made with: finish it before they go.
    after_response.drain(timeout=10)
    with _lock:
        if _clients is not None:
            _clients.close()
        _clients = None
        reset_settings()
