"""The template's function handlers, loaded the way Lambda loads them (each app module imported from its
CodeUri), once per test session."""

from __future__ import annotations

from functools import cache

from reverie_dev.local.functions import load_handler
from reverie_dev.local.template import FunctionSpec, Template


@cache
def functions() -> dict[str, FunctionSpec]:
    return Template().functions()


@cache
def load_function(logical_id: str):
    return load_handler(functions()[logical_id])
