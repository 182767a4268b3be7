"""template.yaml read as AWS would read it, so local engines and the runner share its names and settings.

Understands the CloudFormation short tags and resolves the intrinsics the template uses (!Ref, !GetAtt,
!Sub, !If, !Join, !Not, !Equals) against local values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STACK_NAME = "reverie"
PROJECT_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)


@dataclass
class QueueSpec:
    logical_id: str
    name: str
    fifo: bool
    visibility_timeout: int
    retention: int
    dlq_logical_id: str | None = None
    max_receive_count: int | None = None
    content_based_deduplication: bool = False


@dataclass
class QueueTrigger:
    queue_logical_id: str
    batch_size: int
    report_batch_item_failures: bool


@dataclass
class Route:
    method: str
    path: str
    authorized: bool


@dataclass
class Schedule:
    name: str  # the event's logical name, lower-cased: "weekly", "health"
    expression: str


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: str
    handler: str
    timeout: int
    routes: list[Route] = field(default_factory=list)
    queue: QueueTrigger | None = None
    schedules: list[Schedule] = field(default_factory=list)
    # Instances at most: ReservedConcurrentExecutions, or the SQS trigger's MaximumConcurrency (None: unbounded)
    concurrency: int | None = None

    @property
    def app_path(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return PROJECT_ROOT / self.code_uri / f"{module}.py"


class Template:
    """The parts of template.yaml that the local stack needs."""

    def __init__(self, doc: dict[str, Any] | None = None, stack_name: str = STACK_NAME):
        self.doc = doc if doc is not None else load()
        self.stack_name = stack_name
        self.resources: dict[str, dict[str, Any]] = self.doc["Resources"]
        self.globals = self.doc.get("Globals", {}).get("Function", {})
        self.parameters = {k: v.get("Default", "") for k, v in self.doc.get("Parameters", {}).items()}

    # ------------------------------------------------------------- resources of a type
    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def topic_names(self) -> dict[str, tuple[str, bool]]:
        return {
            lid: (self.resolve(r["Properties"]["TopicName"]), bool(r["Properties"].get("FifoTopic")))
            for lid, r in self.of_type("AWS::SNS::Topic").items()
        }

    def queues(self) -> dict[str, QueueSpec]:
        out = {}
        for lid, res in self.of_type("AWS::SQS::Queue").items():
            props = res["Properties"]
            redrive = props.get("RedrivePolicy") or {}
            target = redrive.get("deadLetterTargetArn")
            out[lid] = QueueSpec(
                logical_id=lid,
                name=self.resolve(props["QueueName"]),
                fifo=bool(props.get("FifoQueue")),
                visibility_timeout=int(props.get("VisibilityTimeout", 30)),
                retention=int(props.get("MessageRetentionPeriod", 345600)),
                dlq_logical_id=target["Fn::GetAtt"][0] if target else None,
                max_receive_count=int(redrive["maxReceiveCount"]) if redrive else None,
                content_based_deduplication=bool(props.get("ContentBasedDeduplication")),
            )
        return out

    def subscriptions(self) -> list[tuple[str, str, bool]]:
        """(topic logical id, queue logical id, raw delivery) of each SNS -> SQS subscription."""
        out = []
        for res in self.of_type("AWS::SNS::Subscription").values():
            props = res["Properties"]
            if props.get("Protocol") != "sqs":
                continue
            out.append((props["TopicArn"]["Ref"], props["Endpoint"]["Fn::GetAtt"][0],
                        bool(props.get("RawMessageDelivery"))))
        return out

    def functions(self) -> dict[str, FunctionSpec]:
        out = {}
        for lid, res in self.of_type("AWS::Serverless::Function").items():
            props = res["Properties"]
            spec = FunctionSpec(
                logical_id=lid,
                code_uri=props["CodeUri"],
                handler=props.get("Handler", self.globals.get("Handler", "app.handler")),
                timeout=int(props.get("Timeout", self.globals.get("Timeout", 3))),
            )
            if props.get("ReservedConcurrentExecutions") is not None:
                spec.concurrency = int(self.resolve(props["ReservedConcurrentExecutions"]))
            for name, event in (props.get("Events") or {}).items():
                eprops = event.get("Properties") or {}
                if event["Type"] == "HttpApi":
                    auth = (eprops.get("Auth") or {}).get("Authorizer")
                    spec.routes.append(Route(eprops["Method"].upper(), eprops["Path"], auth != "NONE"))
                elif event["Type"] == "SQS":
                    spec.queue = QueueTrigger(
                        queue_logical_id=eprops["Queue"]["Fn::GetAtt"][0],
                        batch_size=int(eprops.get("BatchSize", 10)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (eprops.get("FunctionResponseTypes") or []),
                    )
                    scaling = (eprops.get("ScalingConfig") or {}).get("MaximumConcurrency")
                    if scaling is not None and spec.concurrency is None:
                        spec.concurrency = int(self.resolve(scaling))
                elif event["Type"] in ("ScheduleV2", "Schedule"):
                    spec.schedules.append(Schedule(name.lower(), eprops["ScheduleExpression"]))
            out[lid] = spec
        return out

    def authorizer_function(self) -> str | None:
        for res in self.of_type("AWS::Serverless::HttpApi").values():
            auth = res["Properties"].get("Auth") or {}
            default = auth.get("DefaultAuthorizer")
            if default:
                arn = auth["Authorizers"][default]["FunctionArn"]
                return arn["Fn::GetAtt"][0]
        return None

    def environment(self, refs: dict[str, str], parameters: dict[str, str] | None = None) -> dict[str, str]:
        """The functions' shared environment with every reference resolved to local values."""
        variables = (self.globals.get("Environment") or {}).get("Variables") or {}
        return {k: str(self.resolve(v, refs=refs, parameters=parameters)) for k, v in variables.items()}

    # ------------------------------------------------------------- intrinsics
    def resolve(self, value: Any, refs: dict[str, str] | None = None,
                parameters: dict[str, str] | None = None) -> Any:
        refs = refs or {}
        params = {**self.parameters, **(parameters or {})}
        pseudo = {"AWS::StackName": self.stack_name, "AWS::Region": "us-east-1",
                  "AWS::AccountId": "123456789012", "AWS::URLSuffix": "amazonaws.com"}

        def ref(name: str) -> Any:
            if name in pseudo:
                return pseudo[name]
            if name in params:
                return params[name]
            if name in refs:
                return refs[name]
            raise KeyError(f"template reference {name!r} has no local value")

        def walk(v: Any) -> Any:
            if isinstance(v, dict) and len(v) == 1:
                (key, arg), = v.items()
                if key == "Ref":
                    return ref(arg)
                if key == "Fn::GetAtt":
                    return refs.get(".".join(arg)) or ref(".".join(arg))
                if key == "Fn::Sub":
                    text, local = (arg, {}) if isinstance(arg, str) else (arg[0], walk(arg[1]))
                    return re.sub(r"\$\{([^}]+)\}",
                                  lambda m: str(local[m.group(1)] if m.group(1) in local else ref(m.group(1))),
                                  text)
                if key == "Fn::Join":
                    items = walk(arg[1])
                    return arg[0].join(str(i) for i in (items if isinstance(items, list) else [items]))
                if key == "Fn::If":
                    cond = self.doc.get("Conditions", {})[arg[0]]
                    return walk(arg[1] if walk(cond) else arg[2])
                if key == "Fn::Not":
                    return not walk(arg[0])
                if key == "Fn::Equals":
                    return walk(arg[0]) == walk(arg[1])
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            return v

        return walk(value)
