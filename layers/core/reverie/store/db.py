"""A small thread-safe pool of Postgres connections with transaction helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extras
import psycopg2.pool
from psycopg2.extensions import connection as PgConnection

from reverie.domain.errors import ServiceUnavailable

psycopg2.extras.register_uuid()


class Database:
    """One per process. `transaction()` commits on success and rolls back on any exception."""

    def __init__(self, url: str, *, max_connections: int = 8, connect_timeout_s: int = 5):
        self.url = url
        self._pool = psycopg2.pool.ThreadedConnectionPool(
            0, max_connections, url, connect_timeout=connect_timeout_s, application_name="reverie"
        )
        # Connections open on first use (minconn 0 above), but psycopg2 closes every connection put back
        # beyond `minconn`, which would reconnect on every query: raising it keeps them for reuse.
        self._pool.minconn = max_connections
        # ThreadedConnectionPool raises instead of waiting when all connections are out; a semaphore
        # turns that into waiting, which is what concurrent lookups on one instance want.
        self._slots = threading.BoundedSemaphore(max_connections)

    @contextmanager
    def _connection(self) -> Iterator[PgConnection]:
        """A pooled connection (waiting for a free one); a closed one is dropped from the pool on return."""
        self._slots.acquire()
        conn = None
        try:
            try:
                conn = self._pool.getconn()
            except psycopg2.OperationalError as exc:
                raise ServiceUnavailable("the database is unreachable") from exc
            yield conn
        finally:
            if conn is not None:
                self._pool.putconn(conn, close=bool(conn.closed))
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


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form; cast with ::vector in SQL (no numpy needed)."""
    return "[" + ",".join(f"{x:.6g}" for x in vector) + "]"
