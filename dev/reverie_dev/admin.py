"""How `reverie project|key` reach the admin function: boto3's lambda.invoke, the same call locally and in AWS.

Locally, on the `make dev` running on a data dir: its API server serves Lambda's Invoke API, so the client is
pointed there (endpoint_url) with dummy credentials, and nothing else needs configuring. In AWS, on a deployed
stack named with --stack: CloudFormation names the stack's AdminFunction, and the caller's own credentials
(IAM) decide whether it may be invoked. Every failure is an AdminError whose message is one line saying what
to do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ADMIN_FUNCTION = "AdminFunction"  # its logical id in template.yaml
LOCAL_REGION = "us-east-1"
# The admin function's Timeout is 30 s; an invocation is never retried (a retried create would make two keys).
_CLIENT_CONFIG = {"connect_timeout": 5, "read_timeout": 70, "retries": {"total_max_attempts": 1}}


class AdminError(Exception):
    """A failure of an admin command, as the one line the user reads."""


def invoke(event: dict[str, Any], *, stack: str | None = None, region: str | None = None,
           data_dir: Path | str = ".reverie") -> dict[str, Any]:
    """The admin function's answer to `event`, on the stack named (or the local one)."""
    return connect(stack=stack, region=region, data_dir=data_dir)(event)


def connect(*, stack: str | None = None, region: str | None = None,
            data_dir: Path | str = ".reverie") -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`invoke` for many events: the admin function found once, its client kept (a backfill sends many)."""
    from botocore.exceptions import BotoCoreError, ClientError

    target: list = []

    def call(event: dict[str, Any]) -> dict[str, Any]:
        try:
            if not target:
                target.extend(_aws_target(stack, region) if stack else _local_target(data_dir))
            client, function = target
            answer = client.invoke(FunctionName=function, Payload=json.dumps(event).encode("utf-8"))
            raw = answer["Payload"].read()
        except ClientError as exc:
            raise AdminError(_client_error(exc, stack, region)) from None
        except BotoCoreError as exc:
            raise AdminError(_botocore_error(exc, stack, data_dir)) from None
        return _answer(answer, raw, stack, data_dir, target[1])

    return call


def _answer(answer: dict[str, Any], raw: bytes, stack: str | None, data_dir: Path | str,
            function: str) -> dict[str, Any]:
    where = f"stack {stack}" if stack else f"the local stack on {data_dir}"
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        raise AdminError(f"the admin function of {where} answered something that is not JSON") from None
    if answer.get("FunctionError"):
        error = payload if isinstance(payload, dict) else {}
        kind, message = error.get("errorType", "Error"), _one_line(str(error.get("errorMessage", payload)))
        logs = ("its log is in the `make dev` console" if not stack
                else f"its log is in CloudWatch (log group /aws/lambda/{function})")
        raise AdminError(f"the admin function of {where} failed: {kind}: {message} ({logs})")
    if not isinstance(payload, dict):
        raise AdminError(f"the admin function of {where} answered {_one_line(str(payload))[:200]!r}, not an object")
    if isinstance(payload.get("error"), dict):
        raise AdminError(_one_line(str(payload["error"].get("message") or payload["error"])))
    return payload


def _local_target(data_dir: Path | str):
    import boto3
    from botocore.config import Config

    from reverie_dev.local.runner import running_state

    state = running_state(data_dir)
    if state is None or not state.get("api_url"):
        raise AdminError(f"no local stack is running on {data_dir}: start it with `make dev`, or pass --stack NAME")
    client = boto3.session.Session().client(
        "lambda", endpoint_url=state["api_url"], region_name=LOCAL_REGION, aws_access_key_id="local",
        aws_secret_access_key="local", config=Config(**_CLIENT_CONFIG))
    return client, ADMIN_FUNCTION


def _aws_target(stack: str, region: str | None):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
    config = Config(**_CLIENT_CONFIG)
    cloudformation = session.client("cloudformation", config=config)
    try:
        found = cloudformation.describe_stack_resource(StackName=stack, LogicalResourceId=ADMIN_FUNCTION)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        where = f"in {cloudformation.meta.region_name}"
        if "does not exist" in message and "Resource" in message:
            raise AdminError(f"stack {stack} has no {ADMIN_FUNCTION}: deploy this version of Reverie to it "
                             "(`make deploy`)") from None
        if "does not exist" in message:
            raise AdminError(f"no stack named {stack} {where}: check the name, or pass --region") from None
        raise
    function = found["StackResourceDetail"]["PhysicalResourceId"]
    return session.client("lambda", config=config), function


def _client_error(exc, stack: str | None, region: str | None) -> str:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "Error"), _one_line(error.get("Message", "") or str(exc))
    operation = exc.operation_name
    if code in ("AccessDenied", "AccessDeniedException") or "not authorized" in message:
        return (f"your AWS identity may not {operation} on stack {stack}: it needs "
                f"cloudformation:DescribeStackResource and lambda:InvokeFunction on the admin function ({message})")
    if code in ("ExpiredToken", "ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId"):
        return f"AWS refused your credentials ({code}: {message}): refresh them (e.g. `aws sso login`)"
    if code == "ResourceNotFoundException" and not stack:
        return f"the local stack has no {ADMIN_FUNCTION} ({message}): restart `make dev` with this version"
    return f"{operation} failed: {code}: {message}"


def _botocore_error(exc, stack: str | None, data_dir: Path | str) -> str:
    from botocore.exceptions import (
        ConnectionClosedError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    if isinstance(exc, NoCredentialsError):
        return (f"no AWS credentials to reach stack {stack}: configure them (`aws configure`, AWS_PROFILE, or "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
    if isinstance(exc, NoRegionError):
        return f"no AWS region for stack {stack}: pass --region, or set AWS_REGION"
    if isinstance(exc, ProfileNotFound):
        return f"{_one_line(str(exc))}: set AWS_PROFILE to a profile of ~/.aws/config, or unset it"
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError):
        if stack:
            return f"cannot reach AWS for stack {stack}: {_one_line(str(exc))}"
        return (f"the local stack on {data_dir} does not answer ({_one_line(str(exc))}): is `make dev` still "
                "running? Start it again")
    return f"{type(exc).__name__}: {_one_line(str(exc))}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
