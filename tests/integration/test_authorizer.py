"""The authorizer maps a key to its project; no key or a bad key is refused (401 at the gateway)."""

import pytest

from reverie.api.authorizer import authorize
from tests.support.projects import new_project


def _event(authorization=None):
    return {"headers": {"authorization": authorization} if authorization else {}}


def test_a_known_key_is_allowed_with_its_project(clients, project):
    assert authorize(clients, _event(f"Bearer {project.key}")) == {
        "isAuthorized": True, "context": {"project_id": project.project_id}}


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer rv_not_a_real_key"])
def test_missing_or_unknown_keys_are_unauthorized(clients, header):
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(clients, _event(header))


def test_keys_are_stored_hashed(clients, project):
    with clients.db.transaction(project.project_id) as conn, conn.cursor() as cur:
        cur.execute("SELECT key_hash, prefix FROM api_keys WHERE project_id = %s", (project.project_id,))
        key_hash, prefix = cur.fetchone()
    assert project.key not in key_hash
    assert len(key_hash) == 64 and project.key.startswith(prefix)


def test_a_revoked_key_stops_working(clients, project):
    from reverie.api.auth import KeyResolver
    from reverie.domain.errors import Unauthorized
    from reverie.store.projects import revoke_api_key

    resolver = KeyResolver(clients.db, ttl_s=0)
    assert resolver.project_for(project.key) == project.project_id
    assert revoke_api_key(clients.db, project.project_id, project.key_id)
    with pytest.raises(Unauthorized):
        resolver.project_for(project.key)


# ---------------------------------------------------------------- the key cache and revocation


@pytest.fixture
def lookups(monkeypatch):
    """Counts the database lookups of keys (each a query on api_keys)."""
    from reverie.store import projects

    counted = []
    real = projects.project_for_key_hash

    def counting(db, key_hash):
        counted.append(key_hash)
        return real(db, key_hash)

    monkeypatch.setattr(projects, "project_for_key_hash", counting)
    return counted


def test_a_flood_of_unknown_keys_leaves_working_keys_cached(clients, project, lookups):
    from reverie.api.auth import KeyResolver
    from reverie.domain.errors import Unauthorized

    resolver = KeyResolver(clients.db, ttl_s=60, max_known=100, max_unknown=50)
    assert resolver.project_for(project.key) == project.project_id
    for i in range(2_000):  # forty times what the cache of unknown keys holds, twenty times the known one
        with pytest.raises(Unauthorized):
            resolver.project_for(f"rv_flood_{i}")
    assert len(lookups) == 1 + 2_000
    assert resolver.project_for(project.key) == project.project_id
    assert len(lookups) == 1 + 2_000, "the working key was looked up again: the flood evicted it"
    assert resolver.cached() == (1, 50)


def test_an_unknown_key_asked_again_is_refused_from_the_cache(clients, lookups):
    from reverie.api.auth import KeyResolver
    from reverie.domain.errors import Unauthorized

    now = [0.0]
    resolver = KeyResolver(clients.db, ttl_s=60, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(Unauthorized):
            resolver.project_for("rv_not_a_real_key")
    assert len(lookups) == 1
    now[0] = 60.0
    with pytest.raises(Unauthorized):
        resolver.project_for("rv_not_a_real_key")
    assert len(lookups) == 2


def test_the_least_recently_used_working_key_goes_first(clients, lookups):
    from reverie.api.auth import KeyResolver

    a, b, c = (new_project(clients.db, "lru") for _ in range(3))
    resolver = KeyResolver(clients.db, ttl_s=60, max_known=2)
    for key in (a, b, a, c):  # c pushes out b, the least recently used; a stays
        resolver.project_for(key.key)
    before = len(lookups)
    resolver.project_for(a.key)
    assert len(lookups) == before
    resolver.project_for(b.key)
    assert len(lookups) == before + 1


def test_a_revoked_key_is_refused_through_the_gateway_within_the_stated_bound(clients, project, monkeypatch):
    """The worst case: the authorizer looked the key up just before its revocation, and API Gateway asks it again
    just before that answer expires, then keeps the answer ReauthorizeEvery more."""
    from reverie.api import authorizer as authorizer_module
    from reverie.api.auth import KeyResolver
    from reverie.ops.admin import revocation_bound_s
    from reverie.store.projects import revoke_api_key
    from reverie_dev.local.api_gateway import ApiGateway, Request, authorizer_from, routes_from
    from reverie_dev.local.functions import FunctionError
    from reverie_dev.local.template import Template

    now = [0.0]
    ttl = clients.settings.auth_cache_ttl_s
    monkeypatch.setattr(authorizer_module, "_resolver", KeyResolver(clients.db, ttl_s=ttl, clock=lambda: now[0]))

    def invoke(function, event, expected_errors=()):
        if function != "AuthorizerFunction":
            return {"statusCode": 204}
        try:
            return authorizer_module.authorize(clients, event)
        except Exception as exc:
            raise FunctionError(function, type(exc).__name__, str(exc)) from exc

    template = Template()
    gateway = ApiGateway(routes_from(template.functions()), invoke, authorizer_from(template), clock=lambda: now[0])

    def status() -> int:
        return gateway.handle(Request("GET", "/v1/status", headers=[("Authorization", f"Bearer {project.key}")])).status

    bound = revocation_bound_s(clients.settings)
    assert authorizer_module.resolver(clients).project_for(project.key) == project.project_id  # looked up at 0
    assert revoke_api_key(clients.db, project.project_id, project.key_id)  # revoked at 0
    now[0] = ttl - 0.1
    assert status() == 204  # the authorizer answers from its cache; the gateway keeps that answer
    now[0] = bound - 0.2
    assert status() == 204  # still the gateway's cached answer: the bound is not slack
    now[0] = bound
    assert status() == 401
