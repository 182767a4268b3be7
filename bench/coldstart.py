"""Cold starts: for every function of template.yaml, in a fresh Python process, the import of its handler (what
Lambda's Init phase pays; `python -X importtime` gives the breakdown) and its first invocation with its sample
event (connections opened, schema checked), on the embedded engines. The fresh process is given the variables the
Lambda runtime sets (LAMBDA_TASK_ROOT and the function's name): libraries take their Lambda path on them, e.g. the
X-Ray SDK under Powertools' Tracer, which outside Lambda builds two botocore clients for centralised sampling at import.

    python bench/coldstart.py [--runs 3]

Writes bench/results/coldstart.json: {"functions": {"<function>": {"import_ms", "first_invoke_ms", ...}}}.
Target: the chat function's import under 600 ms here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAT_IMPORT_TARGET_MS = 600

# Runs in the fresh process: the import, then one invocation, each timed; the answer's status on stdout.
_PROBE = r"""
import importlib.util, json, sys, time
began = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imported = time.perf_counter()
from reverie_dev.local.context import LambdaContext
event = json.loads(sys.argv[2])
try:
    answer = module.handler(event, LambdaContext(timeout_s=120))
    ok = not (isinstance(answer, dict) and str(answer.get("statusCode", 200)).startswith("5"))
except Exception as exc:
    ok, answer = False, repr(exc)
invoked = time.perf_counter()
print(json.dumps({"import_ms": (imported - began) * 1000, "first_invoke_ms": (invoked - imported) * 1000,
                  "ok": ok}))
"""


def import_breakdown(app: Path, env: dict[str, str]) -> list[tuple[str, float]]:
    """The slowest top-level packages of the import, from `python -X importtime` (cumulative ms)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           f"import importlib.util as u; s = u.spec_from_file_location('app', {str(app)!r}); "
                           "m = u.module_from_spec(s); s.loader.exec_module(m)"],
                          env=env, capture_output=True, text=True, timeout=120)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if not name.startswith(" ") and "." not in name.strip():
            totals[name.strip()] = max(totals.get(name.strip(), 0.0), int(parts[1]) / 1000)
    return sorted(totals.items(), key=lambda item: -item[1])[:5]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per function (the median is kept)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "coldstart.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    from reverie_dev.local.runner import LocalStack
    from reverie_dev.local.template import Template

    template = Template()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="reverie-coldstart-") as tmp:
        stack = LocalStack(run_schedules=False)
        stack.start(Path(tmp), port=0)
        try:
            base_env = {**os.environ, **stack.environment, "POWERTOOLS_TRACE_DISABLED": "true"}
            for logical_id, spec in sorted(template.functions().items()):
                event = _sample_event(spec, stack)
                env = {**base_env, **lambda_runtime_environment(spec, template.stack_name)}
                runs = []
                for _ in range(args.runs):
                    done = subprocess.run([sys.executable, "-c", _PROBE, str(spec.app_path), json.dumps(event)],
                                          env=env, capture_output=True, text=True, timeout=300)
                    runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                results[logical_id] = {
                    "import_ms": round(statistics.median(r["import_ms"] for r in runs), 1),
                    "first_invoke_ms": round(statistics.median(r["first_invoke_ms"] for r in runs), 1),
                    "answered": all(r["ok"] for r in runs),
                    "slowest_imports_ms": dict((n, round(ms, 1)) for n, ms in import_breakdown(spec.app_path, env)),
                }
                print(f"{logical_id}: import {results[logical_id]['import_ms']} ms, first invoke "
                      f"{results[logical_id]['first_invoke_ms']} ms", file=sys.stderr)
        finally:
            stack.stop()
    chat = results.get("ChatFunction", {}).get("import_ms")
    report = {
        "benchmark": "cold start per function (fresh process: handler import, then the first invocation)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "runs_per_function": args.runs,
        "targets": {"chat_import_ms": CHAT_IMPORT_TARGET_MS},
        "met": {"chat_import_ms": chat is not None and chat <= CHAT_IMPORT_TARGET_MS},
        "functions": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def lambda_runtime_environment(spec, stack_name: str) -> dict[str, str]:
    """The reserved variables the Lambda runtime sets in every function's environment (those a library reads)."""
    return {"LAMBDA_TASK_ROOT": str(spec.app_path.parent), "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": f"{stack_name}-{spec.logical_id}", "_HANDLER": spec.handler}


def _sample_event(spec, stack) -> dict:
    """The function's sample event from events/, pointed at the running stack's dev project and key."""
    event = json.loads((ROOT / "events" / f"{Path(spec.code_uri).name}.json").read_text())
    if "headers" in event:
        event["headers"]["authorization"] = f"Bearer {stack.api_key}"
    if event.get("identitySource"):
        event["identitySource"] = [f"Bearer {stack.api_key}"]
    return event


if __name__ == "__main__":
    sys.exit(main())
