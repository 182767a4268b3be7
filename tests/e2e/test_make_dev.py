"""`reverie dev` (what `make dev` runs) as a user runs it: ready, serving, `schedule run` beside it, Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from reverie_dev.local.template import PROJECT_ROOT

pytestmark = pytest.mark.e2e

READY_WITHIN_S = 20  # the promise of `make dev` on a fresh clone


class DevProcess:
    def __init__(self, data_dir, env):
        # Its own session, so the SIGINT below reaches it and its children as a terminal's Ctrl-C does.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reverie_dev.cli", "dev", "--port", "0", "--data-dir", str(data_dir)],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line matching {pattern!r} within {timeout_s} s:\n{''.join(self.lines)}"
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"reverie dev exited ({self.proc.poll()}):\n{''.join(self.lines)}"
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def interrupt(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout=20)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def dev_env(stack):
    # This process carries the e2e stack's engine URLs; the dev process must start its own engines.
    env = {k: v for k, v in os.environ.items() if k not in stack.environment}
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_COLOR"] = "1"
    return env


def start(data_dir, env) -> tuple[DevProcess, str, str]:
    dev = DevProcess(data_dir, env)
    try:
        key = dev.wait_for_line(r"API key\s+(rv_\S+)", READY_WITHIN_S).group(1)
        url = dev.wait_for_line(r"ready at (http://\S+)", READY_WITHIN_S).group(1)
    except BaseException:
        dev.kill()
        raise
    return dev, url, key


def test_make_dev_serves_status_then_stops_on_ctrl_c_keeping_its_data(tmp_path, dev_env):
    data_dir = tmp_path / "data"
    dev, url, key = start(data_dir, dev_env)
    try:
        status = httpx.get(f"{url}/v1/status", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert status.status_code == 200, status.text
        assert (data_dir / "dev-key").read_text().strip() == key
        # The memory inspector is served here as behind API Gateway: the page itself needs no key.
        page = httpx.get(f"{url}/ui", timeout=10)
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]

        # `reverie schedule run` from another shell runs against this stack's engines
        fired = subprocess.run([sys.executable, "-m", "reverie_dev.cli", "schedule", "run", "health",
                                "--data-dir", str(data_dir)], cwd=PROJECT_ROOT, env=dev_env,
                               capture_output=True, text=True, timeout=60)
        assert fired.returncode == 0, fired.stderr
        assert json.loads(fired.stdout)["engines"] == {"postgres": "ok", "valkey": "ok"}
        assert "HealthProbe" in fired.stderr  # its logs, readable, apart from the answer

        assert dev.interrupt() == 0, "".join(dev.lines)
    finally:
        dev.kill()
    output = "".join(dev.lines)
    assert "stopped. Data kept" in output
    assert "Traceback" not in output
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert (data_dir / "dev-key").read_text().strip() == key
    assert not (data_dir / "dev.json").exists()  # nothing claims a stack runs there any more
