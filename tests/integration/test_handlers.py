"""Every function in template.yaml imports to a callable and accepts its sample event from events/."""

import copy
import json
from pathlib import Path

import pytest

from reverie_dev.local.template import PROJECT_ROOT
from tests.support.functions import functions, load_handler

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
        # the event parses, authenticates, routes and is answered: what a user who copies the sample gets
        assert 200 <= answer["statusCode"] < 300, answer.get("body")
    if spec.queue:
        assert answer == {"batchItemFailures": []}
    if spec.logical_id == "AuthorizerFunction":
        assert answer == {"isAuthorized": True, "context": {"project_id": project.project_id}}
    if spec.logical_id == "HealthProbeFunction":
        assert answer["engines"] == {"postgres": "ok", "valkey": "ok"}
    if spec.logical_id == "WindowSweepFunction":
        assert answer["failed"] == 0 and answer["sent"] == answer["windows"]
    if spec.logical_id == "NarrativeSweepFunction":
        assert answer["queued"] >= 0
    if spec.logical_id == "MigrateFunction":
        assert answer == {"applied": []}  # the session's database is current
    if spec.logical_id == "AdminFunction":
        # the sample lists the projects: this test's is among them, with its one key
        listed = {p["project_id"]: p for p in answer["projects"]}
        assert listed[project.project_id]["keys"] == 1
