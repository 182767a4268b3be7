"""Every function in template.yaml imports to a callable and accepts its sample event from events/."""

import copy
import json
from pathlib import Path

import pytest
from function_loader import functions, load_handler

from reverie.local.template import PROJECT_ROOT

FUNCTIONS = functions()


def sample_event(spec, project) -> dict:
    event = json.loads((PROJECT_ROOT / "events" / f"{Path(spec.code_uri).name}.json").read_text())
    event = copy.deepcopy(event)
    # Point the sample at this test's project and key, as a user replaces the placeholder key.
    if "headers" in event:
        event["headers"]["authorization"] = f"Bearer {project.key}"
    authorizer = event.get("requestContext", {}).get("authorizer")
    if authorizer:
        authorizer["lambda"]["project_id"] = project.project_id
    if event.get("identitySource"):
        event["identitySource"] = [f"Bearer {project.key}"]
    for record in event.get("Records", []):
        body = json.loads(record["body"])
        body["project_id"] = project.project_id
        record["body"] = json.dumps(body)
    return event


@pytest.mark.parametrize("spec", list(FUNCTIONS.values()), ids=lambda f: f.logical_id)
def test_handler_imports_to_a_callable(spec):
    assert callable(load_handler(spec))


@pytest.mark.parametrize("spec", list(FUNCTIONS.values()), ids=lambda f: f.logical_id)
def test_handler_accepts_its_sample_event(spec, project, lambda_context):
    answer = load_handler(spec)(sample_event(spec, project), lambda_context)
    if spec.routes:
        # the event parses, authenticates and routes: no 4xx of ours for a sample a user copies
        assert answer["statusCode"] not in (400, 401, 403, 404, 405, 422), answer.get("body")
    if spec.queue:
        assert answer == {"batchItemFailures": []}
    if spec.logical_id == "AuthorizerFunction":
        assert answer == {"isAuthorized": True, "context": {"project_id": project.project_id}}
