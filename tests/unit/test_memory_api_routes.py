"""The memory API's routes and the template's: API Gateway only sends what the template declares, so a route the
resolver serves but the template lacks is unreachable when deployed (and on `make dev`, which reads the template).
The memory inspector is the one page, with the OpenAPI document, that needs no key."""

from __future__ import annotations

import importlib.util
import re

from reverie.api import openapi
from tests.support.functions import functions

FUNCTION = "MemoryApiFunction"
# The routes API Gateway serves without the authorizer: the OpenAPI document and the inspector's static files.
OPEN_ROUTES = {("GET", "/v1/openapi.json"), ("GET", "/ui"), ("GET", "/ui/{name}")}


def _app():
    spec = functions()[FUNCTION]
    module_spec = importlib.util.spec_from_file_location("memory_api_app_routes", spec.app_path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.app


APP = _app()


def served() -> set[tuple[str, str]]:
    """(method, path) of every route the function's resolver serves, paths as the template writes them."""
    return {(r.method, re.sub(r"<(\w+)>", r"{\1}", r.path)) for r in APP._static_routes + APP._dynamic_routes}


def declared() -> dict[tuple[str, str], bool]:
    """(method, path) of the function's HttpApi events, and whether the authorizer guards each."""
    return {(r.method, r.path): r.authorized for r in functions()[FUNCTION].routes}


def test_every_route_the_memory_api_serves_is_declared_in_the_template_and_none_is_left_over():
    routes = declared()
    missing = sorted((m, p) for m, p in served() if (m, p) not in routes and ("ANY", p) not in routes)
    assert missing == [], "declare these as HttpApi events of MemoryApiFunction in template.yaml"
    unserved = sorted((m, p) for m, p in routes if not any(p == q and m in ("ANY", n) for n, q in served()))
    assert unserved == [], "these template routes reach no route of the memory API"


def test_only_the_openapi_document_and_the_inspector_need_no_key():
    assert {route for route, authorized in declared().items() if not authorized} == OPEN_ROUTES


def test_the_inspector_api_additions_are_in_the_openapi_document():
    paths = openapi.document(APP)["paths"]
    assert {"get"} <= set(paths["/v1/users"]) and {"patch", "get", "delete"} <= set(paths["/v1/memories/{memory_id}"])
    assert "get" in paths["/v1/users/{user_id}/jobs"]
    parameters = {p["name"] for p in paths["/v1/memories"]["get"]["parameters"]}
    assert "include_superseded" in parameters
    patch = paths["/v1/memories/{memory_id}"]["patch"]
    assert {"200", "400", "404", "409", "413", "415", "429"} <= set(patch["responses"])
    assert not any(path.startswith("/ui") for path in paths)
