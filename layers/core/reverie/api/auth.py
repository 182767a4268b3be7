"""API keys on a request: the bearer token, resolved to its project (with a short in-process cache).

Keys are made, hashed and stored in `reverie.store.projects` (the admin function makes them too); the names
below are kept for the code that imported them from here.
"""

from __future__ import annotations

import threading
import time

from reverie.domain.errors import Unauthorized
from reverie.store import projects
from reverie.store.db import Database
from reverie.store.projects import KEY_PREFIX, IssuedKey, hash_key, issue_key

__all__ = ["KEY_PREFIX", "IssuedKey", "KeyResolver", "bearer_token", "hash_key", "issue_key"]


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <api key>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <api key>'")
    return token.strip()


class KeyResolver:
    """Maps a key to its project; answers are cached briefly so a revoked key stops working soon."""

    def __init__(self, db: Database, ttl_s: float = 60.0, clock=time.monotonic):
        self.db = db
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def project_for(self, key: str) -> str:
        digest = hash_key(key)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit and hit[0] > now:
            project = hit[1]
        else:
            project = projects.project_for_key_hash(self.db, digest)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now + self._ttl, project)
        if project is None:
            raise Unauthorized("unknown or revoked API key")
        return project
