"""A small thread-safe pool of Postgres connections with transaction helpers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


def connection_string(*, host: str, port: int, dbname: str, user: str, password: str, sslmode: str) -> str:
    """A libpq connection string from its parts, quoted as libpq wants (any character in a password is safe)."""
    return psycopg2.extensions.make_dsn(host=host, port=port, dbname=dbname, user=user, password=password,
                                        sslmode=sslmode)


def refused_credentials(exc: psycopg2.OperationalError) -> bool:
    """Whether opening a connection failed because the server refused the user or password (psycopg2 gives no
    SQLSTATE for most connection failures, so the server's message is read too)."""
    return exc.pgcode in _REFUSED_SQLSTATES or "password authentication failed" in str(exc)


class Database:
    """One per process. `transaction()` commits on success and rolls back on any exception.

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
    def transaction(self) -> Iterator[PgConnection]:
        with self._connection() as conn:
            try:
                yield conn
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise

    @contextmanager
    def cursor(self) -> Iterator[psycopg2.extras.RealDictCursor]:
        """A dict cursor inside its own transaction."""
        with self.transaction() as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            yield cur

    @contextmanager
    def read(self, cursor_factory=psycopg2.extras.RealDictCursor) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor (dict rows unless told otherwise) for ONE read statement, in autocommit: one round trip
        instead of BEGIN, query, COMMIT. Not for writes, nor for reads that must see one snapshot across
        statements (use `cursor()`)."""
        with self._connection() as conn:
            # psycopg2 sends nothing for this switch: it only stops issuing BEGIN before the statement.
            conn.autocommit = True
            try:
                with conn.cursor(cursor_factory=cursor_factory) as cur:
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
        with self.transaction() as conn, conn.cursor() as cur:
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
    """pgvector's text form; cast with ::vector in SQL (no numpy needed)."""
    return "[" + ",".join(f"{x:.6g}" for x in vector) + "]"
