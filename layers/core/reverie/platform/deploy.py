"""Schema migration on deploy, answered to CloudFormation as a custom resource."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from reverie.platform.observability import logger
from reverie.store import Database, migrate


def migrate_database(db: Database) -> dict[str, Any]:
    applied = migrate(db)
    result = {"applied": [f"{m.version:04d}_{m.name}" for m in applied]}
    logger.info("migrations applied", extra=result)
    return result


def handle_custom_resource(event: dict[str, Any], context: Any, database) -> dict[str, Any]:
    """Create/Update migrate; Delete keeps the data. Direct invocations (no ResponseURL) just migrate."""
    if "ResponseURL" not in event:
        return migrate_database(database())
    status, reason, data = "SUCCESS", "", {}
    try:
        if event.get("RequestType") in ("Create", "Update"):
            data = migrate_database(database())
    except Exception as exc:
        logger.exception("migration failed")
        status, reason = "FAILED", f"migration failed: {exc}"[:1000]
    _answer(event, context, status, reason, data)
    return {"status": status, "reason": reason, **data}


def _answer(event: dict[str, Any], context: Any, status: str, reason: str, data: dict[str, Any]) -> None:
    body = json.dumps({
        "Status": status,
        "Reason": reason or f"see log stream {getattr(context, 'log_stream_name', '')}",
        "PhysicalResourceId": event.get("PhysicalResourceId") or "reverie-schema",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {"applied": ",".join(data.get("applied", []))},
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=10):
        pass
