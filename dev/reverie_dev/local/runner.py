"""The whole system on this machine (`make dev`, the e2e stack, `reverie schedule run`): the engines, every
function of template.yaml in process, and the AWS parts that call them (API Gateway, SQS mappings, schedules)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from reverie.domain.errors import NotFound, ReverieError, ServiceUnavailable
from reverie.platform import after_response
from reverie_dev.local import console as local_console
from reverie_dev.local.api_gateway import ApiGateway, ApiServer, authorizer_from, bind, routes_from
from reverie_dev.local.functions import FunctionError, Handler, LocalFunction, load_all
from reverie_dev.local.lambda_api import LambdaInvokeApi
from reverie_dev.local.pollers import QueuePoller
from reverie_dev.local.sam_env import SAM_ENV_FILE, SamLocal
from reverie_dev.local.schedules import Entry, Scheduler, scheduler_event
from reverie_dev.local.template import Template

log = logging.getLogger("reverie.local")

DEFAULT_DATA_DIR = Path(".reverie")
DEV_PROJECT = "dev"
KEY_FILE = "dev-key"  # Postgres keeps only the key's hash; the plain key is kept here so it survives restarts
STATE_FILE = "dev.json"  # where a running `make dev` says how to reach its engines (for `schedule run`)
MARKER_FILE = ".reverie-local"  # only a folder carrying it is ever wiped by --reset
DEFAULT_RETRY_DELAY_S = 2.0

_running: LocalStack | None = None


class LocalStack:
    """One per process: the functions share the process's clients (reverie.platform.clients) and environment."""

    def __init__(self, template: Template | None = None, *, retry_delay_s: float = DEFAULT_RETRY_DELAY_S,
                 schedule_rate_s: float | None = None, run_schedules: bool = True, poll_wait_s: int = 1):
        self.template = template or Template()
        self.retry_delay_s = retry_delay_s
        self.schedule_rate_s = schedule_rate_s
        self.run_schedules = run_schedules
        self.poll_wait_s = poll_wait_s
        self.engines: Any = None
        self.functions: dict[str, LocalFunction] = {}
        self.pollers: dict[str, QueuePoller] = {}
        self.scheduler: Scheduler | None = None
        self.gateway: ApiGateway | None = None
        self.server: ApiServer | None = None
        self.data_dir: Path | None = None
        self.persist = False
        self.project_id = DEV_PROJECT
        self.api_key = ""
        self.environment: dict[str, str] = {}
        self.started = False
        self._saved_environ: dict[str, str] | None = None
        self._server_thread: threading.Thread | None = None
        self._sam_local: SamLocal | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self, data_dir: Path | str | None = None, *, persist: bool = False, port: int = 3000,
              host: str = "127.0.0.1") -> LocalStack:
        global _running
        if _running is not None:
            raise RuntimeError("a local stack is already running in this process")
        _running = self
        try:
            self._start(Path(data_dir) if data_dir is not None else None, persist, port, host)
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def _start(self, data_dir: Path | None, persist: bool, port: int, host: str) -> None:
        from reverie.platform import clients as runtime
        from reverie_dev.local import engines as local_engines

        specs = self.template.functions()
        # Lambda's Invoke API beside the routes, so `reverie project|key` (boto3's lambda.invoke) reaches the admin
        # function here as it does in AWS.
        self.gateway = ApiGateway(routes_from(specs), self.invoke, authorizer_from(self.template),
                                  lambda_api=LambdaInvokeApi(self.invoke, specs))
        # Bind first: a taken port fails in a moment, before any engine starts.
        self.server = bind(self.gateway, host, port)

        self.data_dir, self.persist = data_dir, persist
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / MARKER_FILE).write_text("Reverie's local data (make dev). `make dev-reset` wipes it.\n")
        self.engines = local_engines.start(data_dir, persist=persist)
        self.environment = self.engines.environment()
        self._saved_environ = dict(os.environ)
        os.environ.update(self.environment)
        runtime.reset()

        # engines.start() migrated as the owner; the functions (and the dev key below) use their own login role.
        self.api_key = self._dev_key(runtime.clients().db)

        self.functions = load_all(self.template)
        sqs = self.engines.client("sqs")
        for spec in specs.values():
            if spec.queue is None:
                continue
            queue = spec.queue.queue_logical_id
            self.pollers[spec.logical_id] = QueuePoller(
                function=spec.logical_id, queue_url=self.engines.refs[queue],
                queue_arn=self.engines.refs[f"{queue}.Arn"], batch_size=spec.queue.batch_size,
                report_batch_item_failures=spec.queue.report_batch_item_failures, invoke=self.invoke, sqs=sqs,
                retry_delay_s=self.retry_delay_s, wait_time_s=self.poll_wait_s,
            )
        for poller in self.pollers.values():
            poller.start()
        if self.run_schedules:
            entries = [Entry(s.name, f.logical_id, s.expression) for f in specs.values() for s in f.schedules]
            self.scheduler = Scheduler(entries, self._fire, self.schedule_rate_s)
            self.scheduler.start()
        self._server_thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                               name="api-gateway", daemon=True)
        self._server_thread.start()
        if data_dir is not None:
            self._write_state()
            # for `sam local invoke --env-vars`: the functions in Docker reach these engines
            try:
                self._sam_local = SamLocal(data_dir / SAM_ENV_FILE, self.environment, self.template)
            except OSError as exc:
                log.warning("no %s for `sam local invoke`: %s", SAM_ENV_FILE, exc)

    def stop(self) -> None:
        """Stop the schedules, pollers and API, then the engines (persisted data is kept). Idempotent."""
        global _running
        from reverie.platform import clients as runtime

        if self.scheduler is not None:
            self.scheduler.stop(timeout=5)
            self.scheduler = None
        for poller in self.pollers.values():
            poller._stopping.set()
        for name, poller in self.pollers.items():
            poller.stop(timeout=self.poll_wait_s + 5)
            if poller.is_alive():
                log.warning("%s is still busy with a batch; it is abandoned", name, extra={"function": name})
        self.pollers = {}
        if self.server is not None:
            if self._server_thread is not None:
                self.server.shutdown()
            self.server.server_close()
            self.server, self._server_thread = None, None
        if self.started and not after_response.drain(timeout=10):
            log.warning("work deferred past a response is still running; it is abandoned")
        if self.data_dir is not None:
            (self.data_dir / STATE_FILE).unlink(missing_ok=True)
        if self._sam_local is not None:
            self._sam_local.close()
            self._sam_local = None
        runtime.reset()
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None
            runtime.reset()
        if self.engines is not None:
            self.engines.stop()
            self.engines = None
        self.started = False
        if _running is self:
            _running = None

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ what tests and the console use
    @property
    def port(self) -> int:
        assert self.server is not None, "the stack is not started"
        return int(self.server.server_address[1])

    @property
    def base_url(self) -> str:
        assert self.server is not None, "the stack is not started"
        return f"http://{self.server.server_address[0]}:{self.port}"

    @property
    def clients(self):
        from reverie.platform import clients as runtime

        return runtime.clients()

    def client(self, service: str):
        return self.engines.client(service)

    def queue_url(self, logical_id: str) -> str:
        return self.engines.refs[logical_id]

    def invoke(self, function: str, event: Any, *, expected_errors: tuple[str, ...] = ()) -> Any:
        """Invoke a function in process as Lambda would (raises FunctionError when it fails)."""
        return self.functions[function].invoke(event, expected_errors=expected_errors)

    @contextmanager
    def override_handler(self, function: str, handler: Handler) -> Iterator[LocalFunction]:
        """Within the block, every instance of `function` (its route, queue or schedule) runs `handler` instead of
        its own code; `handler` may call the function's own code (`.handler` before the block), on its instance."""
        target = self.functions[function]
        original = target.handler
        target.handler = handler
        try:
            yield target
        finally:
            target.handler = original

    def schedules(self) -> dict[str, str]:
        """Schedule name -> the function it fires."""
        return {s.name: f.logical_id for f in self.template.functions().values() for s in f.schedules}

    def run_schedule(self, name: str) -> Any:
        """Fire the schedule `name` now, as EventBridge Scheduler would, and return the function's answer."""
        function = _schedule_function(self.template, name)
        return self.invoke(function, scheduler_event(name, self.template.stack_name))

    def _fire(self, name: str) -> None:
        log.info("schedule %s fires", name, extra={"function": self.schedules()[name]})
        self.run_schedule(name)

    # ------------------------------------------------------------ the dev project and its key
    def _dev_key(self, db) -> str:
        from reverie.store.projects import create_project, hash_key, issue_key, project_for_key_hash

        create_project(db, DEV_PROJECT, "local development")
        key_file = self.data_dir / KEY_FILE if self.data_dir is not None else None
        if key_file is not None and key_file.exists():
            key = key_file.read_text().strip()
            if key and project_for_key_hash(db, hash_key(key)) == DEV_PROJECT:
                return key
        key = issue_key(db, DEV_PROJECT, name="local dev key").key
        if key_file is not None:
            key_file.write_text(key + "\n")
            key_file.chmod(0o600)
        return key

    def _write_state(self) -> None:
        assert self.data_dir is not None
        # Secrets of the user's own shell (an LLM key) are not written down: a reader has its own shell.
        environment = {k: v for k, v in self.environment.items() if k != "LLM_API_KEY"}
        state = {"pid": os.getpid(), "api_url": self.base_url, "started_at": time.time(), "environment": environment}
        path = self.data_dir / STATE_FILE
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)


def _schedule_function(template: Template, name: str) -> str:
    found = {s.name: f.logical_id for f in template.functions().values() for s in f.schedules}
    if name not in found:
        raise NotFound(f"no schedule named {name!r}; template.yaml has: {', '.join(sorted(found))}")
    return found[name]


# ---------------------------------------------------------------- `reverie schedule run`
def running_state(data_dir: Path | str = DEFAULT_DATA_DIR) -> dict[str, Any] | None:
    """What a running `make dev` wrote about itself, or None when none runs on this data dir."""
    path = Path(data_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def run_schedule(name: str, data_dir: Path | str = DEFAULT_DATA_DIR) -> Any:
    """Fire a schedule's function now and return its answer.

    In the process of a running stack (tests), on that stack. Otherwise on the engines of the `make dev`
    running on `data_dir`: the function runs here, against that stack's Postgres, Valkey and queues.
    The functions' logs go to stderr, so stdout carries only the answer.
    """
    from reverie.platform import clients as runtime

    if _running is not None and _running.started:
        with redirect_stdout(sys.stderr):
            return _running.run_schedule(name)
    state = running_state(data_dir)
    if state is None:
        raise ServiceUnavailable(f"no local stack is running on {data_dir}: start it with `make dev` first")
    template = Template()
    spec = template.functions()[_schedule_function(template, name)]
    saved = dict(os.environ)
    os.environ.update(state["environment"])
    runtime.reset()
    try:
        out = local_console.install(sys.stderr)
        local_console.attach_functions(out)
        props = template.resources[spec.logical_id].get("Properties") or {}
        function = LocalFunction(spec, int(props.get("MemorySize", template.globals.get("MemorySize", 128))))
        with redirect_stdout(out):
            return function.invoke(scheduler_event(name, template.stack_name))
    except FunctionError as err:
        raise ReverieError(f"{err.function} failed: {err.error_type}: {err.message}") from err
    finally:
        runtime.reset()
        os.environ.clear()
        os.environ.update(saved)


# ---------------------------------------------------------------- `make dev`
def wipe(data_dir: Path) -> None:
    """Remove the local data, refusing a folder that is not ours (a mistyped --data-dir)."""
    if not data_dir.exists():
        return
    if not (data_dir / MARKER_FILE).exists() and any(data_dir.iterdir()):
        raise ReverieError(f"{data_dir} does not hold Reverie's local data ({MARKER_FILE} is missing); not wiping it")
    shutil.rmtree(data_dir)


def main_dev(args) -> int:
    """`reverie dev`: start everything, print how to reach it, run until Ctrl-C, then stop and keep the data."""
    started = time.monotonic()
    data_dir = Path(args.data_dir)
    port = int(getattr(args, "port", 3000))
    rate = getattr(args, "schedule_rate", None) or os.environ.get("REVERIE_SCHEDULE_RATE")
    retry_delay = getattr(args, "retry_delay", None)
    for noise in ("No application metrics to publish", "XDG_RUNTIME_DIR"):
        warnings.filterwarnings("ignore", message=f".*{noise}.*")
    console = local_console.install(sys.stdout, capture_stdout=True)
    _install_signal_handlers()

    if getattr(args, "reset", False):
        try:
            wipe(data_dir)
        except ReverieError as exc:
            console.emit(f"error: {exc.message}")
            return 2
        log.info("wiped %s", data_dir)
    log.info("starting the engines; data lives in %s", data_dir.resolve())
    stack = LocalStack(schedule_rate_s=float(rate) if rate else None,
                       retry_delay_s=float(retry_delay) if retry_delay is not None else DEFAULT_RETRY_DELAY_S)
    try:
        stack.start(data_dir, persist=True, port=port)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno == 98 or "in use" in str(exc).lower():
            console.emit(f"error: port {port} is in use; stop what holds it, or run `reverie dev --port {port + 1}`")
            return 1
        raise
    local_console.attach_functions(console)
    console.emit(_banner(stack, data_dir))
    console.emit(f"Reverie is ready at {_pretty_url(stack)} (started in {time.monotonic() - started:.1f} s). "
                 "Ctrl-C stops it; the data is kept.")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping")
        if _in_main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the engines' shutdown
        stack.stop()
        log.info("stopped. Data kept in %s/ (`make dev-reset` wipes it)", data_dir)
    return 0


def _banner(stack: LocalStack, data_dir: Path) -> str:
    llm = os.environ.get("LLM_BASE_URL")
    llm_line = (f"{llm} (chat {os.environ.get('LLM_CHAT_MODEL', 'gpt-4o-mini')})" if llm
                else "the offline model (set LLM_BASE_URL and LLM_API_KEY for an OpenAI-compatible endpoint)")
    schedules = stack.scheduler.describe() if stack.scheduler else "off"
    where = data_dir.resolve()
    url = _pretty_url(stack)
    return "\n".join([
        "",
        f"  API        {url}",
        f"  project    {stack.project_id}",
        f"  API key    {stack.api_key}   (kept in {where}/{KEY_FILE})",
        f"  inspector  {url}/ui   (the memory inspector: paste the API key)",
        f"  data       {where}/ (Postgres and Valkey, kept between runs; `make dev-reset` wipes it)",
        "  queues     in memory (moto): recreated empty at each start",
        f"  LLM        {llm_line}",
        f"  schedules  {schedules}; fire one now: reverie schedule run health|weekly",
        "",
        f"  try:  curl -H 'Authorization: Bearer {stack.api_key}' {url}/v1/status",
        "",
    ])


def _pretty_url(stack: LocalStack) -> str:
    host = stack.server.server_address[0] if stack.server else "127.0.0.1"
    return f"http://{'localhost' if host == '127.0.0.1' else host}:{stack.port}"


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install_signal_handlers() -> None:
    if not _in_main_thread():
        return

    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C even when started with SIGINT ignored (in the background of a script), and `kill` (or a process
    # manager) stops the stack as cleanly as Ctrl-C does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise)
