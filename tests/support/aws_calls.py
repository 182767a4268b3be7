"""Every AWS call the functions make on the local stack, as IAM actions, to hold against the table their roles
are made from (reverie.platform.permissions)."""

from __future__ import annotations

import threading

import boto3

from reverie.platform.permissions import CALLS
from reverie_dev.local.console import current_function


class AwsCalls:
    """Records (function, "service:Operation") for each call made while a function is being invoked."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def install(self) -> AwsCalls:
        # The functions' clients come from boto3's default session (reverie.platform.clients).
        boto3._get_default_session().events.register("before-call", self._record)
        return self

    def uninstall(self) -> None:
        boto3._get_default_session().events.unregister("before-call", self._record)

    def _record(self, model, **_: object) -> None:
        function = current_function()
        if function in CALLS:  # work outside an invocation (the test's own calls) is not a function's
            with self._lock:
                self.seen.add((function, f"{model.service_model.service_name}:{model.name}"))

    def not_allowed(self) -> list[tuple[str, str]]:
        """The calls a function made that its role would refuse in AWS."""
        with self._lock:
            return sorted((f, a) for f, a in self.seen if a not in CALLS[f])
