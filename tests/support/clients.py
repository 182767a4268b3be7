"""The one client swap: the process's clients with some parts replaced (the model, an unreachable Valkey or
Postgres, settings). Pass a `Swapped` where the code takes clients, or install it with `swapped(...)` for a
block, so that handlers (which use the process's clients) and work they deferred see it too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from reverie.store import Database

DOWN_REDIS_URL = "redis://127.0.0.1:1/0"
DOWN_DATABASE_URL = "postgresql://reverie@127.0.0.1:1/reverie"


class Swapped:
    """`base` (the session's clients, or another Swapped) with these parts replaced; everything else shared."""

    def __init__(self, base, *, llm=None, valkey_down: bool = False, postgres_down: bool = False, **settings: Any):
        self._base = base
        self._parts: dict[str, Any] = {}
        if llm is not None:
            self._parts["llm"] = llm
        if valkey_down:
            self._parts["valkey"] = redis.Redis.from_url(DOWN_REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        if postgres_down:
            self._parts["db"] = Database(DOWN_DATABASE_URL, max_connections=2, connect_timeout_s=1)
        if settings:
            self._parts["settings"] = base.settings.model_copy(update=settings)

    def __getattr__(self, name: str) -> Any:
        parts = self.__dict__.get("_parts", {})
        return parts[name] if name in parts else getattr(self._base, name)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The parts put into the base clients object itself for the block, then put back."""
        base = self._base
        saved = {"llm": base.__dict__.get("llm"), "valkey": base._valkey, "db": base._db, "settings": base.settings}
        try:
            for name, part in self._parts.items():
                if name == "db":
                    base._db = part
                elif name == "valkey":
                    base._valkey = part
                elif name == "settings":
                    base.settings = part
                else:
                    base.__dict__[name] = part  # over the cached property
            yield
        finally:
            base.__dict__.pop("llm", None)
            if saved["llm"] is not None:
                base.__dict__["llm"] = saved["llm"]
            base._db, base._valkey, base.settings = saved["db"], saved["valkey"], saved["settings"]

    def close(self) -> None:
        if "valkey" in self._parts:
            self._parts["valkey"].close()
        if "db" in self._parts:
            self._parts["db"].close()


@contextmanager
def swapped(clients, **parts: Any) -> Iterator[Any]:
    """Install a Swapped (see its arguments) into the process's clients for one block."""
    swap = Swapped(clients, **parts)
    try:
        with swap.installed():
            yield clients
    finally:
        swap.close()
