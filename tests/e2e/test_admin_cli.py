"""`reverie project|key` against the running local stack: boto3's lambda.invoke through the local Invoke API to the
admin function, keys that then work on the API, and every failure one line without a traceback. Also the
env-vars file `make dev` writes for `sam local invoke`."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import httpx
import psycopg2
import pytest

from reverie_dev import cli
from reverie_dev.local.runner import STATE_FILE
from reverie_dev.local.sam_env import SAM_ENV_FILE, declared_variables
from reverie_dev.local.template import PROJECT_ROOT, Template

pytestmark = pytest.mark.e2e


def run(stack, capsys, *argv: str) -> tuple[int, str, str]:
    """The CLI in this process, on the stack's data dir (where its state file says how to reach it)."""
    code = cli.main([*argv, "--data-dir", str(stack.data_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def status(stack, key: str) -> int:
    return httpx.get(f"{stack.base_url}/v1/status", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code


def clean_env(stack) -> dict[str, str]:
    """This process's environment without the stack's engines or AWS credentials: a user's fresh shell."""
    env = {k: v for k, v in os.environ.items() if k not in stack.environment and not k.startswith("AWS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_project_and_keys_made_by_the_cli_work_on_the_api(stack, capsys):
    project_id = "cli-" + secrets.token_hex(4)
    code, out, err = run(stack, capsys, "project", "create", project_id, "--name", "Acme")
    assert code == 0, err
    made = json.loads(out)
    assert made["project_id"] == project_id and "shown only now" in err
    assert status(stack, made["api_key"]) == 200

    code, out, _ = run(stack, capsys, "key", "create", project_id, "--name", "ci")
    second = json.loads(out)
    assert code == 0 and status(stack, second["api_key"]) == 200

    code, out, _ = run(stack, capsys, "project", "list")
    listed = {p["project_id"]: p for p in json.loads(out)["projects"]}
    assert listed[project_id]["name"] == "Acme" and listed[project_id]["keys"] == 2
    assert "dev" in listed

    # a key revoked before anything checked it is refused at once (nothing has it cached)
    code, out, _ = run(stack, capsys, "key", "create", project_id)
    third = json.loads(out)
    code, out, err = run(stack, capsys, "key", "revoke", project_id, third["key_id"])
    assert code == 0 and json.loads(out) == {"revoked": True, "refused_within_s": 120}
    assert "everywhere within 120 s" in err and "ReauthorizeEvery" in err and "AUTH_CACHE_TTL_S" in err
    assert status(stack, third["api_key"]) == 401

    code, out, _ = run(stack, capsys, "key", "list", project_id)
    keys = {k["key_id"]: k for k in json.loads(out)["keys"]}
    assert set(keys) == {made["key_id"], second["key_id"], third["key_id"]}
    assert keys[third["key_id"]]["revoked_at"] and not keys[made["key_id"]]["revoked_at"]
    assert made["api_key"] not in out


def test_the_cli_needs_no_environment_to_reach_the_local_stack(stack):
    project_id = "env-" + secrets.token_hex(4)
    done = subprocess.run([sys.executable, "-m", "reverie_dev.cli", "project", "create", project_id,
                           "--data-dir", str(stack.data_dir)], cwd=PROJECT_ROOT, env=clean_env(stack),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert status(stack, json.loads(done.stdout)["api_key"]) == 200


def test_a_project_sees_its_own_status_and_reverie_status_sees_every_project(stack, capsys):
    from reverie.cache import outbox
    from tests.support.reflect import job

    made = {}
    for name in ("a", "b"):
        code, out, err = run(stack, capsys, "project", "create", f"status-{name}-{secrets.token_hex(3)}")
        assert code == 0, err
        made[name] = json.loads(out)
    # a job of each project waiting in the outbox, as if the topic had refused it for a while
    parked = {name: job(m["project_id"], "ana", "I live in Porto.") for name, m in made.items()}
    for name, j in parked.items():
        outbox.park(stack.clients.valkey, made[name]["project_id"], "ana", j.job_id, j.model_dump_json())
    try:
        for name, other in (("a", "b"), ("b", "a")):
            answer = httpx.get(f"{stack.base_url}/v1/status", timeout=30,
                               headers={"Authorization": f"Bearer {made[name]['api_key']}"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["project_id"] == made[name]["project_id"] and body["outbox"]["jobs"] == 1
            assert "queues" not in body and made[other]["project_id"] not in answer.text

        code, out, err = run(stack, capsys, "status")
        assert code == 0, err
        report = json.loads(out)
        assert set(report["queues"]) == {"episodic", "semantic", "procedural", "narrative"}
        for m in made.values():
            assert report["projects"][m["project_id"]]["outbox"]["jobs"] == 1
    finally:
        for name, j in parked.items():
            outbox.remove(stack.clients.valkey, made[name]["project_id"], "ana", j.job_id)


@pytest.mark.parametrize(("argv", "says"), [
    (["key", "list", "nobody-here"], "error: no project 'nobody-here': create it with"),
    (["project", "create", "bad id"], "error: project_id 'bad id' is not a valid id"),
    (["project", "create", "dev"], "error: project 'dev' already exists and has keys"),
    (["key", "revoke", "dev", "key_000000000000"], "error: project 'dev' has no key 'key_000000000000'"),
    (["project", "list", "--region", "eu-west-1"], "error: --region goes with --stack NAME"),
])
def test_refusals_are_one_line(stack, capsys, argv, says):
    code, out, err = run(stack, capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith(says) and err.count("\n") == 1, err


def test_a_failing_admin_function_is_one_line_naming_the_error(stack, capsys):
    def broken(event, context):
        raise RuntimeError("the disk is on fire")

    with stack.override_handler("AdminFunction", broken):
        code, out, err = run(stack, capsys, "project", "list")
    assert code == 1 and out == ""
    assert err.startswith("error: the admin function of the local stack on ")
    assert "failed: RuntimeError: the disk is on fire" in err and err.count("\n") == 1


def test_an_unknown_stack_is_one_line(stack, capsys):
    # boto3 in this process goes to the stack's moto (AWS_ENDPOINT_URL), where no such stack exists
    code = cli.main(["project", "list", "--stack", "no-such-stack", "--region", "us-east-1"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("error: no stack named no-such-stack in us-east-1") and err.count("\n") == 1, err


def test_with_no_stack_running_the_error_is_one_line_without_a_traceback(stack, tmp_path):
    done = subprocess.run([sys.executable, "-m", "reverie_dev.cli", "project", "create", "acme",
                           "--data-dir", str(tmp_path)], cwd=PROJECT_ROOT, env=clean_env(stack),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"error: no local stack is running on {tmp_path}: start it with `make dev`, "
                           "or pass --stack NAME\n")


def test_the_state_file_names_the_api_that_serves_lambda_invoke(stack):
    state = json.loads((stack.data_dir / STATE_FILE).read_text())
    assert state["api_url"] == stack.base_url


# ---------------------------------------------------------------- sam local invoke
def sam_env(stack) -> dict[str, str]:
    document = json.loads((stack.data_dir / SAM_ENV_FILE).read_text())
    assert set(document) == {"Parameters"}
    return document["Parameters"]


def test_the_sam_env_file_points_at_the_running_engines_over_tcp(stack):
    values = sam_env(stack)
    # SAM sets only what the template declares: the file holds nothing else
    assert set(values) <= declared_variables(Template())
    for name in ("DATABASE_URL", "REDIS_URL", "AWS_ENDPOINT_URL", "EPISODIC_QUEUE_URL", "REFLECTION_TOPIC_ARN"):
        assert values[name], name
    # a container on the host network reaches TCP on 127.0.0.1, never a Unix socket of this machine
    assert values["DATABASE_URL"].startswith("postgresql://") and "@127.0.0.1:" in values["DATABASE_URL"]
    assert "host=" not in values["DATABASE_URL"]
    with psycopg2.connect(values["DATABASE_URL"], connect_timeout=5) as conn, conn.cursor() as cur:
        # the functions' role, which row-level security shows a project's rows only in that project's transaction
        cur.execute("SELECT set_config('reverie.project_id', 'dev', true)")
        cur.execute("SELECT id FROM projects WHERE id = 'dev'")
        assert cur.fetchone() == ("dev",)


def test_a_function_run_with_only_the_sam_env_values_reaches_every_engine(stack):
    # What `sam local invoke HealthProbeFunction -e events/health_probe.json --env-vars ... --docker-network host`
    # gives the function, but without Docker: the file's values and SAM's own AWS variables, nothing else.
    env = {"PATH": os.environ["PATH"], "AWS_SAM_LOCAL": "true", "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "defaultkey",
           "AWS_SECRET_ACCESS_KEY": "defaultsecret", **sam_env(stack)}
    script = ("import json; from reverie_dev.local.context import LambdaContext; "
              "from reverie_dev.local.functions import load_handler; from reverie_dev.local.template import Template; "
              "handler = load_handler(Template().functions()['HealthProbeFunction']); "
              "print(json.dumps(handler(json.load(open('events/health_probe.json')), LambdaContext())))")
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["engines"] == {"postgres": "ok", "valkey": "ok"}
    assert report["queues"]["episodic"]["queue"] is not None
