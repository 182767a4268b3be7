"""A deploy rehearsal: template.yaml transformed by aws-sam-translator (what `sam deploy` runs) with packaged
code URIs, and the CloudFormation it makes read for what would fail or hurt in a real account."""

from __future__ import annotations

import copy
import os
from functools import cache
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from reverie.platform.permissions import CALLS
from reverie_dev.local.template import TEMPLATE_PATH

# Granted by the managed policies SAM attaches (logs, X-Ray, VPC interfaces, polling an SQS trigger): not the
# code's calls, so not in the table.
MANAGED = {"AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSLambdaVPCAccessExecutionRole",
           "AWSLambdaSQSQueueExecutionRole"}
# The properties that name a resource in an account and region.
NAME_PROPERTIES = ("TopicName", "QueueName", "LayerName", "Name", "DashboardName", "LogGroupName", "FunctionName",
                   "AlarmName", "RoleName")
HTTP_API_LIMIT_S = 30


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@cache
def template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE_PATH.read_text())


@cache
def deployed() -> dict[str, Any]:
    """The CloudFormation template `sam deploy` would send, for code packaged to S3."""
    doc = copy.deepcopy(template())
    for logical_id, resource in doc["Resources"].items():
        properties = resource.get("Properties") or {}
        if resource["Type"] == "AWS::Serverless::Function":
            properties["CodeUri"] = f"s3://artifacts/{logical_id}.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = f"s3://artifacts/{logical_id}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(doc, {}, _NoManagedPolicies())


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in deployed()["Resources"].items() if r["Type"] == kind}


def functions() -> dict[str, dict[str, Any]]:
    return resources("AWS::Lambda::Function")


def default(parameter: str) -> Any:
    return template()["Parameters"][parameter]["Default"]


def actions_in(node: Any) -> set[str]:
    """Every Allow action a policy document grants, in every branch of its conditions."""
    found: set[str] = set()
    if isinstance(node, dict):
        if node.get("Effect") == "Allow" and "Action" in node:
            action = node["Action"]
            found |= {action} if isinstance(action, str) else set(action)
        for value in node.values():
            found |= actions_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= actions_in(value)
    return found


def role_of(function_id: str) -> dict[str, Any]:
    role = functions()[function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    return deployed()["Resources"][role]["Properties"]


def granted(action: str, allowed: set[str]) -> bool:
    return any(action == a or (a.endswith("*") and action.startswith(a[:-1])) for a in allowed)


def refers_to(node: Any, logical_id: str) -> bool:
    if isinstance(node, dict):
        if node.get("Ref") == logical_id or (node.get("Fn::GetAtt") or [None])[0] == logical_id:
            return True
        return any(refers_to(v, logical_id) for v in node.values())
    if isinstance(node, list):
        return any(refers_to(v, logical_id) for v in node)
    return False


def test_the_template_transforms_as_sam_deploy_would():
    kinds = {r["Type"] for r in deployed()["Resources"].values()}
    assert "AWS::Lambda::Function" in kinds and not any(k.startswith("AWS::Serverless::") for k in kinds)
    assert set(functions()) == set(CALLS)


def test_every_named_resource_carries_the_stack_name():
    for logical_id, resource in deployed()["Resources"].items():
        for name in NAME_PROPERTIES:
            value = (resource.get("Properties") or {}).get(name)
            if value is None or (isinstance(value, dict) and {"Ref", "Fn::GetAtt"} & value.keys()):
                continue  # not named here: a reference to a resource named elsewhere
            assert "${AWS::StackName}" in str(value), f"{logical_id}.{name} is fixed ({value}): a second stack fails"


@pytest.mark.parametrize("function_id", sorted(CALLS))
def test_each_role_allows_every_call_its_code_makes(function_id):
    allowed = actions_in(role_of(function_id).get("Policies", []))
    missing = sorted(a for a in CALLS[function_id] if not granted(a, allowed))
    assert not missing, f"{function_id} calls {missing} but its role does not allow it"


@pytest.mark.parametrize("function_id", sorted(CALLS))
def test_each_role_allows_nothing_its_code_does_not_call(function_id):
    role = role_of(function_id)
    extra = sorted(a for a in actions_in(role.get("Policies", []))
                   if not any(granted(call, {a}) for call in CALLS[function_id]))
    assert not extra, f"{function_id}'s role grants {extra}, which its code never calls"
    managed = {arn.rsplit("/", 1)[-1] for arn in role.get("ManagedPolicyArns", [])}
    assert managed <= MANAGED


def test_every_function_queue_and_dlq_has_an_alarm():
    alarms = [a["Properties"] for a in resources("AWS::CloudWatch::Alarm").values()]
    queues = resources("AWS::SQS::Queue")
    dlqs = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            for q in queues.values() if "RedrivePolicy" in q["Properties"]}

    def watched(logical_id: str, metric: str) -> bool:
        return any(a["MetricName"] == metric and refers_to(a.get("Dimensions"), logical_id) for a in alarms)

    for function_id in functions():
        assert watched(function_id, "Errors"), f"{function_id} has no errors alarm"
    for queue_id in queues:
        metric = "ApproximateNumberOfMessagesVisible" if queue_id in dlqs else "ApproximateAgeOfOldestMessage"
        assert watched(queue_id, metric), f"{queue_id} has no {metric} alarm"
    assert all(a["AlarmActions"] for a in alarms)


def test_every_function_logs_to_a_group_of_its_own_with_a_retention():
    groups = resources("AWS::Logs::LogGroup")
    for function_id, function in functions().items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, function_id


def test_the_migrate_resource_gives_up_before_an_hour_and_after_its_function():
    [resource] = resources("Custom::Migrate").values()
    timeout = functions()["MigrateFunction"]["Properties"]["Timeout"]
    assert timeout < resource["Properties"]["ServiceTimeout"] <= timeout + 60


def test_http_functions_answer_within_api_gateways_30_seconds():
    for function_id in ("ChatFunction", "MemoryApiFunction", "AuthorizerFunction"):
        assert functions()[function_id]["Properties"]["Timeout"] <= HTTP_API_LIMIT_S


def test_a_queue_hides_a_message_longer_than_six_times_its_consumers_timeout():
    for mapping in resources("AWS::Lambda::EventSourceMapping").values():
        properties = mapping["Properties"]
        queue = template()["Resources"][properties["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]
        function = functions()[properties["FunctionName"]["Ref"]]["Properties"]
        assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]


def test_every_queue_trigger_has_a_maximum_concurrency():
    for logical_id, mapping in resources("AWS::Lambda::EventSourceMapping").items():
        assert "MaximumConcurrency" in mapping["Properties"].get("ScalingConfig", {}), logical_id


def test_a_burst_cannot_open_more_postgres_connections_than_the_budget():
    """Each function's instances at most (reserved concurrency, a trigger's maximum, one schedule firing over
    the next) times its pool, at the parameters' defaults, within DatabaseConnections."""
    instances: dict[str, int] = {}
    for function_id, function in functions().items():
        reserved = function["Properties"].get("ReservedConcurrentExecutions")
        if reserved is not None:
            instances[function_id] = int(default(reserved["Ref"]))
    for mapping in resources("AWS::Lambda::EventSourceMapping").values():
        limit = mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"]
        instances[mapping["Properties"]["FunctionName"]["Ref"]] = int(default(limit["Ref"]))
    for schedule in resources("AWS::Scheduler::Schedule").values():
        instances[schedule["Properties"]["Target"]["Arn"]["Fn::GetAtt"][0]] = 2
    instances.setdefault("MigrateFunction", 1)
    instances.setdefault("AdminFunction", 2)
    assert set(instances) == set(functions()), "a function's instances are not bounded"
    total = 0
    for function_id, count in instances.items():
        pool = int(functions()[function_id]["Properties"]["Environment"]["Variables"]["DB_POOL_MAX"])
        total += count * pool
    assert total == 895 and total <= int(default("DatabaseConnections")), total  # README: Deploying, Connections


def test_a_held_job_waits_after_a_failure_as_long_as_a_queued_message_does():
    from reverie.platform.config import Settings

    for tier in ("Episodic", "Semantic", "Procedural"):
        queue = template()["Resources"][f"{tier}Queue"]["Properties"]
        assert queue["VisibilityTimeout"] == Settings().reflect_retry_after_s
        assert queue["RedrivePolicy"]["maxReceiveCount"] == Settings().reflect_max_receive_count
