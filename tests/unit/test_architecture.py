"""The deployed library's shape: which package may import which (ARCHITECTURE.md), and no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LAYER = Path(__file__).resolve().parents[2] / "layers" / "core"
PACKAGE = LAYER / "reverie"

# Each package of `reverie` and the packages it may import (besides itself). Keep in step with ARCHITECTURE.md.
ALLOWED = {
    "domain": set(),
    "llm": {"domain"},
    "store": {"domain", "llm"},
    "platform": {"domain", "llm", "store"},
    "cache": {"domain", "platform"},
    "jobs": {"domain", "platform", "store", "cache"},
    "chat": {"domain", "platform", "llm", "store", "cache", "jobs"},
    "reflect": {"domain", "platform", "llm", "store", "jobs"},
    "ops": {"domain", "platform", "llm", "store", "cache", "jobs"},
    "forget": {"domain", "platform", "store", "cache"},
    "api": {"domain", "platform", "llm", "store", "cache", "jobs", "chat", "reflect", "ops", "forget"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(LAYER).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The reverie modules a file imports (at any depth: a deferred import is still a dependency)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "reverie"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "reverie":
            found.add(node.module)
            # `from reverie.x import y` may name a module y
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports_of(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_is_in_the_table():
    assert {package_of(m) for m in MODULES} - {None} == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_the_packages_its_own_may(module):
    own = package_of(module)
    if own is None:
        return
    # The root package holds only its docstring: importing a module of it names it too.
    wrong = sorted(m for m in GRAPH[module] if package_of(m) not in ALLOWED[own] | {own, None})
    assert not wrong, f"{module} may not import {wrong} (see ARCHITECTURE.md)"


def test_no_module_imports_the_development_tools_or_the_client():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in {"reverie_dev", "reverie_client", "tests"} for n in names), name


def test_there_is_no_import_circle():
    # Tarjan's strongly connected components: a component of more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for dependency in GRAPH[module]:
            if dependency not in index:
                visit(dependency)
                low[module] = min(low[module], low[dependency])
            elif dependency in stack:
                low[module] = min(low[module], index[dependency])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert circles == []
