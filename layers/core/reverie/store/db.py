"""A small thread-safe pool of Postgres connections with transaction helpers, each scoped to one project.

Every tenant table has row-level security (migration 0006): a row is seen or written only in a transaction that
names its project. So every helper takes the scope first: a project id, `ALL_PROJECTS` for the few paths that
work across projects (the sweeps, the health probe, the authorizer's key lookup, the admin and DLQ tools), or
`NO_PROJECT` for statements that read no tenant table (the schema version, a ping). The SQL keeps its own
`project_id = %s` filters: row-level security is the second wall, not the first.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

import psycopg2
import psycopg2.extras
import psycopg2.pool
from psycopg2.extensions import connection as PgConnection

from reverie.domain.errors import ServiceUnavailable

psycopg2.extras.register_uuid()

# A source of the connection URL: called with fresh=False for the pool, and with fresh=True (bypassing any cache)
# when the server refuses the credentials, as it does once a rotated secret's old password is retired.
UrlSource = Callable[..., str]

# invalid_password, invalid_authorization_specification
_REFUSED_SQLSTATES = frozenset({"28P01", "28000"})


class _AllProjects:
    """The operator's scope: the rows of every project. For the paths that work across projects by nature, never
    for a tenant's request."""

    def __repr__(self) -> str:
        return "ALL_PROJECTS"


class _NoProject:
    """No project: every tenant table shows no rows (for statements that read none)."""

    def __repr__(self) -> str:
        return "NO_PROJECT"


ALL_PROJECTS: Final = _AllProjects()
NO_PROJECT: Final = _NoProject()
# A project id, or one of the two above.
Scope = str | _AllProjects | _NoProject

# Both settings every time, so a scope never inherits the other mode. The third argument, true, makes them local
# to the transaction: they are gone at its end, and a pooled connection carries nothing to its next user (and RDS
# Proxy need not pin it, as a session's SET would). JIT off with them: a search statement's plan holds the vector
# index's branch, whose estimated cost passes jit_above_cost on a large table, and compiling it would take tens of
# milliseconds for a statement that runs in a few. RDS for PostgreSQL has JIT on unless a parameter group says
# otherwise; the embedded engine is built without it, so nothing run here would show the cost.
_SET_SCOPE = ("SELECT set_config('reverie.project_id', %s, true), set_config('reverie.all_projects', %s, true),"
              " set_config('jit', 'off', true)")


def scope_statement(scope: Scope) -> tuple[str, tuple[str, str]] | None:
    """The statement (and its parameters) that puts a transaction in `scope`; None for NO_PROJECT."""
    if scope is ALL_PROJECTS:
        return _SET_SCOPE, ("", "on")
    if scope is NO_PROJECT:
        return None
    if isinstance(scope, str) and scope:
        return _SET_SCOPE, (scope, "off")
    raise TypeError(f"a database scope is a project id, ALL_PROJECTS or NO_PROJECT, not {scope!r}")


class DictCursor(psycopg2.extensions.cursor):
    """Rows as plain dicts keyed by column name. psycopg2's RealDictCursor builds each row in Python a column at a
    time; zipping the names onto the row psycopg2 built in C costs a fraction of that, and a chat turn reads a few
    hundred columns while other lookups of the turn wait for the interpreter."""

    def _names(self) -> list[str]:
        return [column.name for column in self.description or ()]

    def fetchone(self):
        row = super().fetchone()
        return None if row is None else dict(zip(self._names(), row, strict=True))

    def fetchmany(self, size=None):
        rows = super().fetchmany() if size is None else super().fetchmany(size)
        names = self._names()
        return [dict(zip(names, row, strict=True)) for row in rows]

    def fetchall(self):
        names = self._names()
        return [dict(zip(names, row, strict=True)) for row in super().fetchall()]

    def __iter__(self):
        while (row := self.fetchone()) is not None:
            yield row


@functools.cache
def _scoped(base: type) -> type:
    """`base` (a cursor class) sending its scope's set_config in the same message as each statement. Postgres runs
    the statements of one message as one transaction (an implicit one in autocommit), so the setting holds for the
    statement and is gone after it: no round trip is added."""

    class Scoped(base):  # type: ignore[misc, valid-type]
        scope_sql = b""

        def execute(self, query, vars=None):
            return super().execute(self.scope_sql + self.mogrify(query, vars))

    Scoped.__name__ = Scoped.__qualname__ = f"Scoped{base.__name__}"
    return Scoped


def connection_string(*, host: str, port: int, dbname: str, user: str, password: str, sslmode: str) -> str:
    """A libpq connection string from its parts, quoted as libpq wants (any character in a password is safe)."""
    return psycopg2.extensions.make_dsn(host=host, port=port, dbname=dbname, user=user, password=password,
                                        sslmode=sslmode)


def refused_credentials(exc: psycopg2.OperationalError) -> bool:
    """Whether opening a connection failed because the server refused the user or password (psycopg2 gives no
    SQLSTATE for most connection failures, so the server's message is read too)."""
    return exc.pgcode in _REFUSED_SQLSTATES or "password authentication failed" in str(exc)


class Database:
    """One per process. `transaction(scope)` commits on success and rolls back on any exception.

    `url` is a connection URL, or a `UrlSource` returning the current one. When opening a connection fails
    because the credentials are refused, the source is asked again with fresh=True and the pool is rebuilt with
    its answer, once; connections already open stay in use until they are returned, then close."""

    def __init__(self, url: str | UrlSource, *, max_connections: int = 8, connect_timeout_s: int = 5):
        self._source: UrlSource = url if callable(url) else (lambda fresh=False: url)
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._renew_lock = threading.Lock()
        self.url = self._source(fresh=False)  # what the pool connects with (for a connection of one's own)
        self._pool = self._make_pool(self.url)
        # ThreadedConnectionPool raises instead of waiting when all connections are out; a semaphore
        # turns that into waiting, which is what concurrent lookups on one instance want.
        self._slots = threading.BoundedSemaphore(max_connections)

    def _make_pool(self, url: str) -> psycopg2.pool.ThreadedConnectionPool:
        pool = psycopg2.pool.ThreadedConnectionPool(
            0, self._max_connections, url, connect_timeout=self._connect_timeout_s, application_name="reverie"
        )
        # Connections open on first use (minconn 0 above), but psycopg2 closes every connection put back
        # beyond `minconn`, which would reconnect on every query: raising it keeps them for reuse.
        pool.minconn = self._max_connections
        return pool

    def _getconn(self) -> tuple[psycopg2.pool.ThreadedConnectionPool, PgConnection]:
        """A connection and the pool it belongs to. Refused credentials are fetched afresh and tried once more."""
        pool = self._pool
        try:
            return pool, pool.getconn()
        except psycopg2.OperationalError as exc:
            if not refused_credentials(exc):
                raise ServiceUnavailable("the database is unreachable") from exc
        pool = self._renew(pool)
        try:
            return pool, pool.getconn()
        except psycopg2.OperationalError as exc:
            if refused_credentials(exc):
                raise ServiceUnavailable("the database refused the credentials, fetched afresh too") from exc
            raise ServiceUnavailable("the database is unreachable") from exc

    def _renew(self, refused: psycopg2.pool.ThreadedConnectionPool) -> psycopg2.pool.ThreadedConnectionPool:
        """A pool with fresh credentials in place of `refused` (one renewal however many threads were refused)."""
        with self._renew_lock:
            if self._pool is refused:
                try:
                    url = self._source(fresh=True)
                except Exception as exc:
                    raise ServiceUnavailable("the database credentials could not be fetched") from exc
                self._pool = self._make_pool(url)
                self.url = url
                _close_idle(refused)
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[PgConnection]:
        """A pooled connection (waiting for a free one); a closed one, or one of a replaced pool, is closed on
        return."""
        self._slots.acquire()
        pool = conn = None
        try:
            pool, conn = self._getconn()
            yield conn
        finally:
            if conn is not None:
                pool.putconn(conn, close=bool(conn.closed) or pool is not self._pool)
            self._slots.release()

    @contextmanager
    def _transaction(self) -> Iterator[PgConnection]:
        with self._connection() as conn:
            try:
                yield conn
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise

    @contextmanager
    def transaction(self, scope: Scope) -> Iterator[PgConnection]:
        """A transaction in `scope` (a project id, ALL_PROJECTS or NO_PROJECT). The scope is set by a statement of
        its own, first: one round trip more than the statements the caller runs on its cursors. `cursor()` and
        `read()` spare it, because they own the cursor the statements go through."""
        statement = scope_statement(scope)
        with self._transaction() as conn:
            if statement is not None:
                with conn.cursor() as cur:
                    cur.execute(*statement)
            yield conn

    @contextmanager
    def cursor(self, scope: Scope) -> Iterator[DictCursor]:
        """A dict cursor inside its own transaction in `scope`."""
        statement = scope_statement(scope)
        factory = DictCursor if statement is None else _scoped(DictCursor)
        with self._transaction() as conn, conn.cursor(cursor_factory=factory) as cur:
            if statement is not None:
                cur.scope_sql = cur.mogrify(*statement) + b"; "
            yield cur

    @contextmanager
    def read(self, scope: Scope, cursor_factory=DictCursor) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor (dict rows unless told otherwise) for ONE read statement in `scope`, in autocommit: one round
        trip instead of BEGIN, query, COMMIT. Not for writes, nor for reads that must see one snapshot across
        statements (use `cursor()`).

        The scope keeps it at one round trip: the cursor sends `SELECT set_config(...); <the statement>` as one
        message, which Postgres runs as one implicit transaction, so the transaction-local setting holds for the
        statement and ends with it. A transaction in its place would take four round trips (BEGIN, set_config, the
        statement, COMMIT) on each of a chat turn's hot reads."""
        statement = scope_statement(scope)
        factory = cursor_factory or psycopg2.extensions.cursor
        with self._connection() as conn:
            # psycopg2 sends nothing for this switch: it only stops issuing BEGIN before the statement.
            conn.autocommit = True
            try:
                with conn.cursor(cursor_factory=factory if statement is None else _scoped(factory)) as cur:
                    if statement is not None:
                        cur.scope_sql = cur.mogrify(*statement) + b"; "
                    yield cur
            finally:
                # Every other user of the pool expects transaction mode: a connection that cannot be switched
                # back is closed rather than handed to a transaction that would not be atomic.
                try:
                    if not conn.closed:
                        conn.autocommit = False
                except psycopg2.Error:
                    conn.close()

    def ping(self) -> None:
        with self.transaction(NO_PROJECT) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def close(self) -> None:
        self._pool.closeall()


def _close_idle(pool: psycopg2.pool.ThreadedConnectionPool) -> None:
    """Close a replaced pool's idle connections; those in use close when they come back (`closeall` would close
    them under their threads). psycopg2 keeps the idle ones in `_pool`, guarded by `_lock`."""
    with pool._lock:
        idle, pool._pool = pool._pool, []
    for conn in idle:
        conn.close()


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form; cast with ::vector in SQL (no numpy needed). One format of the whole vector, not one
    for each number: a search formats its query's on the way to its answer."""
    return _vector_format(len(vector)) % tuple(vector)


@functools.lru_cache(maxsize=8)
def _vector_format(dimensions: int) -> str:
    return "[" + ",".join(["%.6g"] * dimensions) + "]"
