"""Clients for the engines, made once per process and handed to the logic (never made per record)."""

from __future__ import annotations

import json
import threading
from functools import cached_property

import boto3
import redis
from botocore.config import Config
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from reverie.llm import LLM, make_llm
from reverie.platform.config import Settings, get_settings
from reverie.store import Database, check_schema
from reverie.store.db import connection_string


class Clients:
    """Lazy: a function pays only for the clients it touches. The database is checked against the code's
    schema version on first use, so a function started against an old schema fails loudly, naming the fix."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self._db: Database | None = None
        self._db_lock = threading.Lock()
        self._valkey: redis.Redis | RedisCluster | None = None
        self._valkey_lock = threading.Lock()

    @property
    def db(self) -> Database:
        if self._db is None:
            with self._db_lock:
                if self._db is None:
                    # The URL's source, not the URL: refused credentials (a rotated secret) are fetched afresh.
                    db = Database(self.database_url, max_connections=self.settings.db_pool_max)
                    try:
                        check_schema(db)
                    except Exception:
                        db.close()
                        raise  # not cached: once migrated, the next invocation recovers
                    self._db = db
        return self._db

    @property
    def valkey(self) -> redis.Redis | RedisCluster:
        """A cluster-aware client when the endpoint is a cluster (ElastiCache Serverless always is), else a plain
        one. REDIS_CLUSTER says which; unset, the server is asked once (INFO cluster).

        A cluster client connects as it is made, and asking needs the server: when Valkey is down at that moment
        (a cold start during an outage), a plain client is handed out instead and not kept. Its commands fail as
        a down Valkey's do (RedisError), which every caller handles, and the next use tries again."""
        if self._valkey is not None:
            return self._valkey
        url = self.settings.redis_url
        if not url:
            raise RuntimeError("REDIS_URL is not set")
        options = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        with self._valkey_lock:
            if self._valkey is None:
                try:
                    self._valkey = self._open_valkey(url, options)
                except (RedisError, RedisClusterException):
                    return redis.Redis.from_url(url, **options)
        return self._valkey

    def _open_valkey(self, url: str, options: dict) -> redis.Redis | RedisCluster:
        cluster = self.settings.redis_cluster
        if cluster is None:
            with redis.Redis.from_url(url, **options) as probe:
                cluster = bool(probe.info("cluster").get("cluster_enabled"))
        if cluster:
            return RedisCluster.from_url(url, **options)
        return redis.Redis.from_url(url, health_check_interval=30, **options)

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
        """The owner's connection, for migrating (it does not insist on the current schema: migrating is what
        brings it there)."""
        return Database(self.owner_database_url, max_connections=1)

    def database_url(self, fresh: bool = False) -> str:
        """DATABASE_URL as given, or one made of DATABASE_HOST/PORT/NAME and the username and password of the
        DATABASE_SECRET_ARN secret (an RDS-managed secret holds only those). fresh: read the secret again,
        not from the cache (RDS rotates it)."""
        s = self.settings
        if s.database_url:
            return s.database_url
        if s.database_secret_arn and s.database_host:
            return self._from_secret(s.database_secret_arn, fresh)
        raise RuntimeError("set DATABASE_URL, or DATABASE_HOST with DATABASE_SECRET_ARN (the credentials)")

    def owner_database_url(self, fresh: bool = False) -> str:
        """The schema owner's connection (migrations only): DATABASE_OWNER_URL, or DATABASE_HOST/PORT/NAME with
        the DATABASE_OWNER_SECRET_ARN secret's credentials; without either, the functions' own (database_url)."""
        s = self.settings
        if s.database_owner_url:
            return s.database_owner_url
        if s.database_owner_secret_arn and s.database_host:
            return self._from_secret(s.database_owner_secret_arn, fresh)
        return self.database_url(fresh)

    def _from_secret(self, arn: str, fresh: bool) -> str:
        s = self.settings
        secret = json.loads(self._secret(arn, fresh=fresh))
        return connection_string(host=s.database_host, port=s.database_port, dbname=s.database_name,
                                 user=secret["username"], password=secret["password"], sslmode=s.database_sslmode)

    def _secret(self, arn: str, *, fresh: bool = False) -> str:
        """A secret's string, cached for 5 minutes (fresh: fetched now)."""
        return self._secrets.get(arn, max_age=300, force_fetch=fresh)

    @cached_property
    def _secrets(self):
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        return SecretsProvider(boto3_client=self.aws("secretsmanager"))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._valkey is not None:
            self._valkey.close()
            self._valkey = None


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
