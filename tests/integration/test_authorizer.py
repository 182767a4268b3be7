"""The authorizer maps a key to its project; no key or a bad key is refused (401 at the gateway)."""

import pytest

from reverie.api.authorizer import authorize


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
    with clients.db.transaction() as conn, conn.cursor() as cur:
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
