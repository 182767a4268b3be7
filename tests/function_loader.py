"""Load a function's handler from template.yaml the way Lambda does: import its app module from CodeUri."""

from __future__ import annotations

import importlib.util
from functools import cache

from reverie.local.template import FunctionSpec, Template


@cache
def functions() -> dict[str, FunctionSpec]:
    return Template().functions()


def load_handler(spec: FunctionSpec):
    _, _, attr = spec.handler.rpartition(".")
    module_spec = importlib.util.spec_from_file_location(f"fn_{spec.logical_id}", spec.app_path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, attr)


@cache
def load_function(logical_id: str):
    return load_handler(functions()[logical_id])
