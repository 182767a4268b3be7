"""Applies schema migrations: on deploy as a CloudFormation custom resource, or when invoked directly.

CloudFormation waits for an answer, so this door answers even when the core cannot be imported (a broken or
missing layer), with the standard library only: FAILED for Create and Update, SUCCESS for Delete (nothing is
touched on delete, and so the rollback of a failed deploy can finish).
"""

import json
import time
import urllib.request

try:
    from reverie.platform.clients import clients
    from reverie.platform.deploy import handle_custom_resource
    from reverie.platform.observability import logger
except Exception as exc:  # whatever broke the import, CloudFormation must still be answered
    CORE_IMPORT_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    CORE_IMPORT_ERROR = None

    @logger.inject_lambda_context(clear_state=True)
    def _handle(event, context):
        return handle_custom_resource(event, context, clients)


def handler(event, context):
    if CORE_IMPORT_ERROR is None:
        return _handle(event, context)
    return _answer_without_core(event, context)


def _answer_without_core(event, context):
    print(json.dumps({"level": "ERROR", "message": "the core failed to import", "error": CORE_IMPORT_ERROR}))
    if "ResponseURL" not in event:
        raise RuntimeError(f"the core failed to import: {CORE_IMPORT_ERROR}")
    delete = event.get("RequestType") == "Delete"
    status = "SUCCESS" if delete else "FAILED"
    reason = "nothing to do on delete: the schema and its data are kept" if delete else (
        f"Reverie's code failed to import, nothing was migrated: {CORE_IMPORT_ERROR}")
    body = json.dumps({
        "Status": status,
        "Reason": f"{reason} (log stream {getattr(context, 'log_stream_name', '')})"[:1000],
        "PhysicalResourceId": event.get("PhysicalResourceId") or "reverie-schema",  # deploy.PHYSICAL_ID
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {},
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    for attempt in range(3):
        try:
            with urllib.request.urlopen(request, timeout=4):
                return {"status": status, "reason": reason}
        except OSError as exc:  # HTTPError, URLError and timeouts are all OSErrors
            error = exc
            if attempt < 2:
                time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"could not answer CloudFormation ({error}): in a VPC, S3 needs a gateway endpoint or NAT")
