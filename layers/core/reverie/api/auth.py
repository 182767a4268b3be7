"""API keys: made, hashed, and resolved to their project (with a short in-process cache)."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from reverie.domain.errors import Unauthorized
from reverie.store import projects
from reverie.store.db import Database

KEY_PREFIX = "rv_"


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    project_id: str
    key: str  # shown once, never stored


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def issue_key(db: Database, project_id: str, name: str = "") -> IssuedKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = "key_" + secrets.token_hex(6)
    projects.add_api_key(
        db, key_id=key_id, project_id=project_id, key_hash=hash_key(key), prefix=key[:8], name=name
    )
    return IssuedKey(key_id=key_id, project_id=project_id, key=key)


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
