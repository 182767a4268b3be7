"""The bad input that once gave a 500, sent over HTTP through the local API Gateway to both HTTP functions: a 4xx
in the error shape (or the documented answer), never a 5xx."""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.e2e

CHAT = {"user_id": "bad-input", "session_id": "s1", "message": "I live in Porto"}
ASK = {"user_id": "bad-input", "question": "Where do I live?"}


@pytest.mark.parametrize("path,valid", [("/v1/chat", CHAT), ("/v1/memories/ask", ASK)])
@pytest.mark.parametrize("content,content_type,status", [
    (b'{"user_id": "\xff\xfe"}', "application/json", 400),
    (b"[" * 5000 + b"]" * 5000, "application/json", 400),
    (b'{"n": ' + b"7" * 5000 + b"}", "application/json", 400),
    (None, "multipart/form-data", 415),
    (None, "text/plain", 415),
    (b"user_id=bad-input&question=Where", "application/x-www-form-urlencoded", 415),
])
def test_an_unreadable_body_is_a_4xx_in_the_error_shape(api, path, valid, content, content_type, status):
    response = api.post(path, content=content if content is not None else json.dumps(valid).encode(),
                        headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]["message"]


def test_timestamps_ids_and_nul_in_a_query_are_never_a_server_error(api):
    stored = api.post("/v1/memories", json={"user_id": "bad-input", "messages": [{"content": "I live in Porto"}],
                                            "infer": False})
    assert stored.status_code == 201, stored.text
    memory_id = stored.json()["memories"][0]["id"]
    found = api.post("/v1/memories/search", json={"user_id": "bad-input", "query": "Porto",
                                                  "as_of": "2999-01-01T00:00:00+20:00"})
    assert found.status_code == 200 and [h["id"] for h in found.json()["results"]] == [memory_id]
    for form in (f"urn:uuid:{memory_id}", f"{{{memory_id}}}"):
        assert uuid.UUID(form) == uuid.UUID(memory_id)
        assert api.get(f"/v1/memories/{form}").status_code == 404
        assert api.delete(f"/v1/memories/{form}").status_code == 404
    assert api.get(f"/v1/memories/{memory_id}").status_code == 200
    for query in ("user_id=bad%00input", "user_id=bad-input&cursor=%00", "user_id=bad-input&limit=" + "9" * 5000):
        response = api.get(f"/v1/memories?{query}")
        assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    nul = api.get("/v1/context?user_id=bad-input&query=where%00")
    assert nul.status_code == 400 and nul.json()["error"]["code"] == "validation_error"
