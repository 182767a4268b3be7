"""The core layer built as Lambda runs it (Python 3.12 on arm64, wheels only): every requirement resolves,
nothing of development is in it, and it fits Lambda's 250 MB."""

from __future__ import annotations

import json

import pytest
from packaging.utils import canonicalize_name

from reverie_dev import layer

pytestmark = pytest.mark.integration


def test_the_layer_builds_for_lambda_and_holds_only_what_runs_there(tmp_path):
    record = tmp_path / "layer.json"
    assert layer.main(["--out", str(tmp_path / "build"), "--record", str(record)]) == 0
    built = json.loads(record.read_text())
    assert built["problems"] == []
    assert built["unzipped_bytes"] < layer.LIMIT_BYTES
    names = {canonicalize_name(d.split("==")[0]) for d in built["distributions"]}
    assert {"aws-lambda-powertools", "pydantic", "redis", "psycopg2-binary", "boto3"} <= names
    assert not names & layer.DEVELOPMENT_ONLY
    target = tmp_path / "build" / "python"
    assert (target / "reverie" / "api" / "routes.py").exists()
    assert not (target / "reverie_dev").exists() and not (target / "reverie_client").exists()
    assert any(p.name.endswith("aarch64-linux-gnu.so") for p in (target / "psycopg2").iterdir())
