"""API keys on a request: the bearer token, resolved to its project (with a short, bounded in-process cache).

Keys are made, hashed and stored in `reverie.store.projects` (the admin function makes them too); the names
below are kept for the code that imported them from here.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

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
    """Maps a key to its project, remembering answers for `ttl_s` so most requests cost no database lookup.

    Known keys and unknown ones are remembered apart, each in a bounded LRU: made-up keys, however many, only
    cycle the small cache of unknown ones and never evict a working key (nor cost its next request a lookup). An
    answer is trusted `ttl_s` at most, so a key revoked in the store is refused here within `ttl_s`.
    """

    def __init__(self, db: Database, ttl_s: float = 60.0, clock=time.monotonic, *, max_known: int = 10_000,
                 max_unknown: int = 1_000):
        self.db = db
        self._ttl = ttl_s
        self._clock = clock
        self._known = _Lru(max_known)
        self._unknown = _Lru(max_unknown)
        self._lock = threading.Lock()

    def project_for(self, key: str) -> str:
        digest = hash_key(key)
        now = self._clock()
        with self._lock:
            project = self._known.get(digest, now)
            refused_lately = project is None and self._unknown.get(digest, now) is not None
        if project is None and not refused_lately:
            project = projects.project_for_key_hash(self.db, digest)
            with self._lock:
                remembered = self._known if project is not None else self._unknown
                remembered.put(digest, project or "", now + self._ttl)
        if project is None:
            raise Unauthorized("unknown or revoked API key")
        return project

    def cached(self) -> tuple[int, int]:
        """How many known and unknown keys are remembered (expired ones included until they are pushed out)."""
        with self._lock:
            return len(self._known), len(self._unknown)


class _Lru:
    """At most `size` entries, each with its own expiry; the least recently used goes first. Not thread-safe."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> str | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return hit[1]

    def put(self, key: str, value: str, expires: float) -> None:
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
