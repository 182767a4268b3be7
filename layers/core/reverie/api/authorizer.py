"""The HTTP API authorizer's logic: a known key is allowed with its project in the context.

A missing or unknown key raises "Unauthorized", which API Gateway answers with 401 (an explicit deny
would be a 403).
"""

from __future__ import annotations

from typing import Any

from reverie.api.auth import KeyResolver, bearer_token
from reverie.domain.errors import Unauthorized
from reverie.platform.observability import logger

_resolver: KeyResolver | None = None


def resolver(clients) -> KeyResolver:
    """One resolver (and so one key cache) per process, rebuilt if the process's clients were replaced."""
    global _resolver
    db = clients.db
    if _resolver is None or _resolver.db is not db:
        _resolver = KeyResolver(db, ttl_s=clients.settings.auth_cache_ttl_s)
    return _resolver


def authorize(clients, event: dict[str, Any]) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        project = resolver(clients).project_for(bearer_token(headers.get("authorization")))
    except Unauthorized as exc:
        logger.info("request refused", extra={"reason": exc.message})
        raise Exception("Unauthorized") from None
    return {"isAuthorized": True, "context": {"project_id": project}}
