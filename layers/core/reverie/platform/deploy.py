"""Schema migration on deploy, answered to CloudFormation as a custom resource.

CloudFormation waits for the answer, a PUT to a presigned S3 URL, until the resource's ServiceTimeout; an
answer that never comes holds the stack for that long. So every path answers, and in time:

- Delete answers SUCCESS at once and touches nothing (the schema and its data are kept, and a rollback of a
  failed create can always finish).
- Create and Update migrate within a budget: the function's remaining time (from the Lambda context) less what
  answering needs. Each statement's lock wait and run time are capped by it too (lock_timeout and
  statement_timeout), so the database gives up as well. A migration that fails, or outruns its budget, is
  answered FAILED with the reason.
- The PUT has a timeout and is retried. Answering needs a route to S3: in a VPC, an S3 gateway endpoint or NAT.

A failure to import this code at all is answered by the function's door (functions/migrate/app.py), with the
standard library only.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reverie.platform.observability import logger
from reverie.store import migrate

if TYPE_CHECKING:
    from reverie.platform.clients import Clients

# The physical id of the schema resource: the same on every answer, so an update never reads as a replacement.
PHYSICAL_ID = "reverie-schema"
# Time kept back from the migration for answering: PUT_ATTEMPTS tries of PUT_TIMEOUT_S with backoff between.
ANSWER_RESERVE_S = 15.0
PUT_TIMEOUT_S = 4.0
PUT_ATTEMPTS = 3
# Below this a migration is not started at all.
MIN_BUDGET_S = 1.0
# Without a Lambda context (a local call) the budget is this.
DEFAULT_BUDGET_S = 240.0
# CloudFormation takes at most 4 KB of answer.
REASON_MAX = 1000


def handle_custom_resource(event: dict[str, Any], context: Any, clients: Callable[[], Clients]) -> dict[str, Any]:
    """Answer CloudFormation's Create/Update (migrate) and Delete (keep everything). A direct invocation (no
    ResponseURL) just migrates, under the same budget, and raises when that fails. `clients` is called only
    when there is something to migrate, inside the error handling, so nothing before the answer can escape."""
    started = time.monotonic()
    deadline = started + _remaining_s(context)
    budget = deadline - started - ANSWER_RESERVE_S
    if "ResponseURL" not in event:
        status, reason, data = _migrate_within(clients, budget)
        if status != "SUCCESS":
            raise RuntimeError(reason)
        return data
    request_type = event.get("RequestType")
    if request_type == "Delete":
        status, reason, data = "SUCCESS", "nothing to do on delete: the schema and its data are kept", {}
    elif request_type in ("Create", "Update"):
        status, reason, data = _migrate_within(clients, budget)
    else:
        status, reason, data = "FAILED", f"unknown RequestType {request_type!r}", {}
    answer(event, context, status, reason, data, deadline=deadline)
    return {"status": status, "reason": reason, **data}


def _remaining_s(context: Any) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining() / 1000 if callable(remaining) else DEFAULT_BUDGET_S + ANSWER_RESERVE_S


def _migrate_within(clients: Callable[[], Clients], budget_s: float) -> tuple[str, str, dict[str, Any]]:
    """(status, reason, data) of migrating within budget_s. The migration runs on a worker thread, so that the
    budget holds whatever it waits on (the secret, the connection, a lock)."""
    if budget_s < MIN_BUDGET_S:
        return "FAILED", (f"only {budget_s + ANSWER_RESERVE_S:.1f} s of the function's time were left, too little "
                          f"to migrate and answer (raise the function's Timeout)"), {}
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["data"] = migrate_database(clients(), budget_s)
        except BaseException as exc:  # every failure becomes the answer's reason
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="reverie-migrate", daemon=True)
    worker.start()
    worker.join(budget_s)
    if worker.is_alive():
        logger.error("migration outran its budget", extra={"budget_s": round(budget_s, 1)})
        return "FAILED", (f"migration did not finish within its budget of {budget_s:.1f} s (the function's "
                          f"remaining time less {ANSWER_RESERVE_S:g} s kept to answer CloudFormation); "
                          "lock_timeout and statement_timeout, capped at the budget, make the database give up "
                          "on it too"), {}
    if "error" in outcome:
        exc = outcome["error"]
        logger.error("migration failed", exc_info=exc)
        return "FAILED", f"migration failed: {type(exc).__name__}: {exc}", {}
    data = outcome["data"]
    applied = ", ".join(data["applied"])
    return "SUCCESS", (f"applied {applied}" if applied else "the schema is current"), data


def migrate_database(clients: Clients, budget_s: float = DEFAULT_BUDGET_S) -> dict[str, Any]:
    """Migrate with the settings' lock and statement timeouts, neither longer than the budget."""
    settings = clients.settings
    # Not clients.db: that one refuses to start against an old schema, which is what this is here to fix.
    db = clients.migration_database()
    try:
        applied = migrate(
            db,
            lock_timeout_s=min(settings.migrate_lock_timeout_s, budget_s),
            statement_timeout_s=min(settings.migrate_statement_timeout_s, budget_s),
        )
    finally:
        db.close()
    result = {"applied": [f"{m.version:04d}_{m.name}" for m in applied]}
    logger.info("migrations applied", extra=result)
    return result


def response_body(event: dict[str, Any], context: Any, status: str, reason: str,
                  data: dict[str, Any] | None = None) -> bytes:
    """What CloudFormation reads from the presigned URL."""
    log_stream = getattr(context, "log_stream_name", "") or ""
    if log_stream:
        reason = f"{reason} (log stream {log_stream})"
    return json.dumps({
        "Status": status,
        "Reason": reason[:REASON_MAX],
        "PhysicalResourceId": event.get("PhysicalResourceId") or PHYSICAL_ID,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {key: _attribute(value) for key, value in (data or {}).items()},
    }).encode()


def _attribute(value: Any) -> str:
    """A value CloudFormation can give to Fn::GetAtt: a string, lists comma-joined."""
    return (",".join(map(str, value)) if isinstance(value, list | tuple) else str(value))[:REASON_MAX]


def answer(event: dict[str, Any], context: Any, status: str, reason: str, data: dict[str, Any] | None = None,
           *, deadline: float | None = None) -> None:
    """PUT the answer to the presigned ResponseURL: PUT_ATTEMPTS tries, each with a timeout, all before the
    deadline (time.monotonic()). Raises when none got through, so the invocation shows as failed."""
    body = response_body(event, context, status, reason, data)
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     # the URL is signed without a content type: send none
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    errors: list[str] = []
    for attempt in range(PUT_ATTEMPTS):
        timeout = PUT_TIMEOUT_S if deadline is None else min(PUT_TIMEOUT_S, deadline - time.monotonic() - 0.5)
        if timeout <= 0:
            errors.append("no time left")
            break
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                logger.info("answered CloudFormation", extra={"status": status, "attempt": attempt + 1})
                return
        except urllib.error.HTTPError as exc:
            errors.append(f"HTTP {exc.code}")
            if exc.code < 500:
                break  # a refused (expired, or mis-signed) URL stays refused
        except OSError as exc:  # no route, refused, timed out (URLError and TimeoutError are OSErrors)
            errors.append(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
        if attempt + 1 < PUT_ATTEMPTS:
            time.sleep(0.5 * (attempt + 1))
    message = (f"could not answer CloudFormation ({'; '.join(errors)}): a function in a VPC needs a route to S3 "
               "(an S3 gateway endpoint, or NAT)")
    logger.error(message, extra={"status": status, "reason": reason})
    raise RuntimeError(message)
