"""Running a benchmark of bench/ in a process of its own, as `make bench-*` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The URLs of the tests' engines. A benchmark given none starts engines of its own: it rebuilds indexes and empties
# queues, which the tests' engines must not see.
ENGINE_VARIABLES = frozenset({"DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "AWS_ENDPOINT_URL", "LLM_BASE_URL"})


def run_bench(script: str, *args: str, timeout: int = 600, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
    """bench/`script` with `args`, run from the project's root; on engines of its own unless `env` is given."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in ENGINE_VARIABLES}
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
