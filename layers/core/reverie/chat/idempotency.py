"""Idempotency-Key: a retried turn (a chat request, or a turn recorded with POST /v1/turns) gets the first answer
back and publishes no second job. The two share the user's keys: a key is one request, whichever route it went to.

Powertools idempotency on Valkey (its cache persistence layer), scoped by project and user. The job id is
also derived from the key, so even a retry that cannot be checked (Valkey down) publishes the same job id,
which SNS FIFO and the reflectors' processed_jobs both drop.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.cache import CachePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from pydantic import BaseModel, ValidationError

from reverie.cache import keys, users
from reverie.domain.errors import Conflict, ReverieError, ValidationFailed
from reverie.domain.fields import new_id
from reverie.platform.metric_names import Metric
from reverie.platform.observability import logger, metrics

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)

    class _ValkeyPersistence(CachePersistenceLayer):
        """Powertools' Valkey layer, listing each record it creates in the user's record set, so a forget finds
        the user's remembered answers without scanning. (Powertools 3.x warns on every instance of its class
        that it will be renamed; a subclass only warns when defined, silenced here.)"""

        def __init__(self, *, client, records_key: str, forgotten_since: Callable[[], bool]):
            super().__init__(client=client)
            self.records_key = records_key
            self.forgotten_since = forgotten_since

        def _put_in_progress_record(self, data_record) -> None:
            super()._put_in_progress_record(data_record)
            self.client.sadd(self.records_key, data_record.idempotency_key)
            self.client.expire(self.records_key, RECORD_TTL_S)

        def _update_record(self, data_record) -> None:
            super()._update_record(data_record)
            # The answer holds the reply's text: if the user was forgotten while it was made, it must not stay.
            if self.forgotten_since():
                self.client.delete(data_record.idempotency_key)


RECORD_TTL_S = 24 * 3600
MAX_KEY_LENGTH = 255
# How long an answer in progress holds its key when no Lambda context tells the invocation's deadline.
DEFAULT_IN_PROGRESS_S = 30
_KEY_RE = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII, as HTTP header values should be
_NAMESPACE = uuid.UUID("6f1c3e0a-5b2d-4d8e-9a51-2f7c0d9b8e41")

M = TypeVar("M", bound=BaseModel)


class RequestInProgress(Conflict):
    code = "request_in_progress"


class IdempotencyKeyReused(ReverieError):
    status = 422
    code = "idempotency_key_reused"


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not _KEY_RE.match(key):
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters")
    return key


def turn_once(
    valkey, project_id: str, request: BaseModel, idempotency_key: str | None, *, run: Callable[[str, str], M],
    model: type[M], began_at: datetime, lambda_context=None,
) -> M:
    """A turn's ids and, with an Idempotency-Key, the turn at most once: `run(turn_id, job_id)` makes the answer
    (`model`, which carries `job_id`). Without a key the ids are new. With one they are derived from (project, key,
    body), so even a retry that cannot be checked makes the same job, and a retry gets the first answer (`once`)."""
    if idempotency_key is None:
        return run(new_id(), new_id())
    key = check_key(idempotency_key)
    body = request.model_dump(mode="json")
    turn_id = derived_id(project_id, key, body, "turn")
    job_id = derived_id(project_id, key, body, "job")
    return once(
        valkey, project_id=project_id, user_id=request.user_id, key=key, payload=body,
        run=lambda: run(turn_id, job_id), model=model, same_request=lambda first: first.job_id == job_id,
        lambda_context=lambda_context, began_at=began_at.timestamp(),
    )


def derived_id(project_id: str, key: str, payload: dict[str, Any], purpose: str) -> str:
    """A stable id for one (project, key, body): the same retry gets the same job id, a different body
    under a reused key does not."""
    body = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return str(uuid.uuid5(_NAMESPACE, f"{purpose}\n{project_id}\n{key}\n{body}"))


def once(
    valkey, *, project_id: str, user_id: str, key: str, payload: dict[str, Any], run: Callable[[], M],
    model: type[M], same_request: Callable[[M], bool], lambda_context=None, began_at: float | None = None,
) -> M:
    """Run `run` at most once per (project, user, key); a repeat gets the stored answer.

    A repeat while the first is still running is a 409. A stored answer for which `same_request` is False
    means the key was reused with another body: 422. (Powertools' payload validation cannot do this on
    Valkey: its cache layer drops the payload hash when it marks a record complete.) When Valkey cannot be
    reached the turn runs unguarded (logged, metric): its derived job id keeps a retry from being applied
    twice."""
    outcome: dict[str, Any] = {}

    def guarded_run(request: dict[str, Any]) -> M:
        outcome["started"] = True
        try:
            outcome["result"] = run()
        except Exception as exc:
            outcome["error"] = exc
            raise
        return outcome["result"]

    config = IdempotencyConfig(
        event_key_jmespath="[project, key]", raise_on_no_idempotency_key=True,
        expires_after_seconds=RECORD_TTL_S, lambda_context=lambda_context or _DefaultDeadline(),
    )
    # One persistence layer per call: configure() keeps the key prefix on the instance, and a local runner
    # may serve requests on several threads.
    guarded = idempotent_function(
        guarded_run, data_keyword_argument="request", persistence_store=_ValkeyPersistence(
            client=valkey, records_key=keys.idempotency_records(project_id, user_id),
            forgotten_since=lambda: began_at is not None and users.forgotten_since(valkey, project_id, user_id,
                                                                                   began_at)),
        config=config, output_serializer=_StoredAnswer(model),
        key_prefix=keys.idempotency_prefix(project_id, user_id),
    )
    try:
        answer = guarded(request={"project": project_id, "key": key, "body": payload})
    except IdempotencyAlreadyInProgressError:
        raise RequestInProgress("a request with this Idempotency-Key is still in progress; retry shortly") from None
    except IdempotencyPersistenceLayerError as exc:
        if "result" in outcome:  # answered, but the answer could not be stored for a retry
            logger.warning("idempotency record not saved", extra={"error": _cause(exc)})
            metrics.add_metric(name=Metric.IDEMPOTENCY_UNAVAILABLE, unit=MetricUnit.Count, value=1)
            return outcome["result"]
        if "error" in outcome:  # the turn itself failed (and its record could not be released)
            error = outcome["error"]
            raise error from error.__cause__
        logger.warning("Idempotency-Key not checked: Valkey unreachable", extra={"error": _cause(exc)})
        metrics.add_metric(name=Metric.IDEMPOTENCY_UNAVAILABLE, unit=MetricUnit.Count, value=1)
        return run()
    if "started" not in outcome and not same_request(answer):
        raise IdempotencyKeyReused("this Idempotency-Key was already used with a different request body")
    return answer


class _StoredAnswer(PydanticSerializer):
    """The answer remembered for a key, read back as `model`. One that is not a `model` was remembered for another
    route (a chat's answer, read for a recorded turn): the key was used with another request."""

    def from_dict(self, data: dict) -> BaseModel:
        try:
            return super().from_dict(data)
        except ValidationError:
            raise IdempotencyKeyReused("this Idempotency-Key was already used with a different request") from None


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return type(cause).__name__


class _DefaultDeadline:
    """Stands in for a Lambda context outside Lambda, so an in-progress record always expires."""

    def get_remaining_time_in_millis(self) -> int:
        return DEFAULT_IN_PROGRESS_S * 1000
