"""`sam local invoke` against the running `make dev`: the env-vars file that points a function in Docker at this
machine's engines, and a TCP door to the embedded Postgres (it listens on a Unix socket only, which a container
cannot reach).

    sam local invoke ChatFunction -e events/chat.json --env-vars .reverie/sam-env.json --docker-network host

With `--docker-network host` the container shares this machine's network, so 127.0.0.1 is here. SAM sets only
the variables the template declares, so the file holds just those (AWS_ENDPOINT_URL among them); the
credentials and region are SAM's own (moto takes any). A key of an LLM endpoint is never written to a file: with
one, the file leaves LLM_BASE_URL empty and the functions use the offline model.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from reverie_dev.local.template import Template

log = logging.getLogger("reverie.local")

SAM_ENV_FILE = "sam-env.json"


def declared_variables(template: Template) -> set[str]:
    """The environment variables the template declares for its functions (the ones `--env-vars` can set)."""
    names = set((template.globals.get("Environment") or {}).get("Variables") or {})
    for res in template.of_type("AWS::Serverless::Function").values():
        names |= set(((res.get("Properties") or {}).get("Environment") or {}).get("Variables") or {})
    return names


def sam_env(environment: dict[str, str], template: Template, database_url: str | None = None) -> dict[str, Any]:
    """SAM's env-vars document ({"Parameters": ...}, for every function) from the functions' local environment;
    `database_url` in place of the environment's when the Postgres it names is out of a container's reach."""
    names = declared_variables(template)
    values = {k: v for k, v in environment.items() if k in names}
    if database_url:
        values["DATABASE_URL"] = database_url
    if environment.get("LLM_API_KEY") and "LLM_BASE_URL" in values:
        values["LLM_BASE_URL"] = ""
    return {"Parameters": dict(sorted(values.items()))}


def unix_socket_of(database_url: str) -> str | None:
    """The Unix socket a Postgres URL names (`?host=/dir`, with the port's socket file), else None."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    host = (query.get("host") or [parts.hostname or ""])[0]
    if not host.startswith("/"):
        return None
    port = (query.get("port") or [str(parts.port or 5432)])[0]
    return f"{host}/.s.PGSQL.{port}"


def over_tcp(database_url: str, host: str, port: int) -> str:
    """The same Postgres URL reaching the server at host:port instead of its Unix socket."""
    parts = urlsplit(database_url)
    user = parts.username or "postgres"
    password = f":{parts.password}" if parts.password else ""
    rest = urlencode({k: v[0] for k, v in parse_qs(parts.query).items() if k not in ("host", "port")})
    return urlunsplit((parts.scheme, f"{user}{password}@{host}:{port}", parts.path, rest, ""))


class SocketDoor:
    """127.0.0.1:<a free port> forwarded to a Unix socket, a thread per connection."""

    def __init__(self, socket_path: str, host: str = "127.0.0.1"):
        self.socket_path = socket_path
        door = self

        class Forward(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                door._forward(self.request)

        self._stopping = threading.Event()
        self.server = socketserver.ThreadingTCPServer((host, 0), Forward, bind_and_activate=True)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="postgres-door", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def _forward(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.socket_path)
        except OSError as exc:
            log.warning("the Postgres door cannot reach %s: %s", self.socket_path, exc)
            upstream.close()
            return
        peers = {client: upstream, upstream: client}
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select(list(peers), [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            upstream.close()

    def close(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()


class SamLocal:
    """What a running stack keeps for `sam local invoke`: the env-vars file and, when needed, the Postgres door."""

    def __init__(self, path: Path, environment: dict[str, str], template: Template):
        self.path = path
        self.door: SocketDoor | None = None
        database_url = environment.get("DATABASE_URL", "")
        tcp_url = None
        socket_path = unix_socket_of(database_url) if database_url else None
        if socket_path is not None:
            self.door = SocketDoor(socket_path)
            tcp_url = over_tcp(database_url, *self.door.address)
        try:
            document = sam_env(environment, template, tcp_url)
            path.write_text(json.dumps(document, indent=2) + "\n")
            path.chmod(0o600)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        if self.door is not None:
            self.door.close()
            self.door = None
