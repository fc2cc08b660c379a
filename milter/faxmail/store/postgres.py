"""The job store in PostgreSQL: one database shared by the milters, dispatchers and notify of
several hosts. Chosen by the settings' `store.url`; SQLite (`sqlite.py`) stays the default.

It implements every protocol of `interface.py` with SQLite's behaviour; what differs is how
concurrent writers on other hosts are kept apart (SQLite has one write lock, BEGIN IMMEDIATE):
- admission takes transaction-scoped advisory locks on the sender and the Message-ID before
  counting: a second milter admitting for the same sender waits for the first to commit, then
  counts its job. Chosen over SERIALIZABLE, which would abort one of two racing admissions and
  need a retry loop in the hot path; READ COMMITTED sees the other's committed row once the lock
  is ours, because each statement takes a fresh snapshot.
- per-job state changes lock the job's row (FOR UPDATE) first, as SQLite's write lock did.
- the dispatch claim locks the line and the number; lapsed leases are taken SKIP LOCKED.
The SQL itself is shared with SQLite (`sqlcommon*.py`, `?` placeholders): `PgDb` hands it to
psycopg with `%s`. Here stay the connection, transactions, locks and error translation.
One connection per process behind a lock, as SQLite's; a broken connection is dropped and
opened again by the next call. Every driver error becomes `StoreUnavailable`.
A write after which a call may start (a job queued, a call over, a claim given back or
expired) also runs `pg_notify` on `DISPATCH_CHANNEL` in its transaction, so it is heard only
once committed: each dispatcher holds a `PgListener` (a connection of its own, LISTENing) and
wakes at once, whichever host's Asterisk or milter made the change.
"""

from __future__ import annotations

import functools
import logging
import select
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from faxmail.store.errors import StoreUnavailable
from faxmail.store.postgres_queries import PostgresQueries
from faxmail.store.postgres_schema import Connection, check_schema
from faxmail.store.sqlcommon import Db, SqlJobs
from faxmail.store.sqlcommon_dispatch import SqlDispatch
from faxmail.store.sqlcommon_notify import SqlDocuments, SqlMessageIdClaims, SqlNotify

log = logging.getLogger("faxmail.store")

CONNECT_TIMEOUT_S = 5  # a database that is down answers 451 in seconds, not minutes
STATEMENT_TIMEOUT = "30s"  # a lock held by a stuck host must not hang an SMTP session
DISPATCH_CHANNEL = "faxmail_dispatch"  # NOTIFY/LISTEN: "the queue changed"
_DRAIN_PASSES = 4  # bounded: a flood of notifications must not keep a drain going


@functools.lru_cache(maxsize=512)
def pg_placeholders(sql: str) -> bytes:
    """`sql` with psycopg's `%s` for each `?`: the shared SQL is our own text, with `?` only as
    placeholders and no `%` (which psycopg would read as one); checked, not assumed."""
    if "%" in sql:
        raise ValueError(f"SQL text with a '%': {sql!r}")
    return sql.replace("?", "%s").encode()


class PgDb:
    """A psycopg connection as `sqlcommon.Db`: `?` placeholders, rewritten once per text."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> psycopg.Cursor[tuple[Any, ...]]:
        return self.conn.execute(pg_placeholders(sql), args)


def unavailable(location: str, exc: psycopg.Error) -> StoreUnavailable:
    full = isinstance(exc, psycopg.errors.DiskFull)
    return StoreUnavailable(f"PostgreSQL job store {location}: {exc}".strip(), full=full)


def connect(url: str) -> Connection:
    """A connection to `url` (StoreUnavailable when the server cannot be reached)."""
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="faxmail",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT}",
        )
    except psycopg.Error as exc:
        raise unavailable(_redacted(url), exc) from exc


def _redacted(url: str) -> str:
    """`url` without a password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "(store.url)"
    return f"{info.get('dbname', '')}@{info.get('host', 'localhost')}:{info.get('port', 5432)}"


def _closed_by_server(db: Connection) -> bool:
    """Whether an idle connection has something to read: the server's goodbye (a restart, an
    admin's terminate). Seen here, before a statement, the next statement gets a new
    connection instead of failing once after every restart of the server."""
    readable, _, _ = select.select([db.fileno()], [], [], 0)
    return bool(readable)


class PgListener:
    """`interface.DispatchListener` over a connection of its own that LISTENs on
    `DISPATCH_CHANNEL` (autocommit: a notification arrives between statements)."""

    def __init__(self, url: str) -> None:
        self._location = _redacted(url)
        self._conn = connect(url)
        try:
            self._conn.execute(f"LISTEN {DISPATCH_CHANNEL}")
        except psycopg.Error as exc:
            self._conn.close()
            raise unavailable(self._location, exc) from exc

    def fileno(self) -> int:
        return self._conn.fileno()

    def drain(self) -> int:
        heard = 0
        try:
            # A server going away sends a message first and ends the stream after it: read
            # on while the socket stays readable, so the end is seen in this call.
            for _ in range(_DRAIN_PASSES):
                heard += sum(1 for _ in self._conn.notifies(timeout=0))
                if not _closed_by_server(self._conn):
                    break
        except psycopg.Error as exc:
            raise unavailable(self._location, exc) from exc
        if self._conn.closed or self._conn.broken:
            raise StoreUnavailable(f"PostgreSQL job store {self._location}: connection lost")
        return heard

    def close(self) -> None:
        self._conn.close()


class PostgresStore(SqlJobs, SqlNotify, SqlMessageIdClaims, SqlDocuments, SqlDispatch):
    # PostgreSQL's own: rows of one second in `seq` order; rows and keys locked explicitly,
    # since writers on other hosts run at once (see the module).
    TIE = "seq"
    ROW_LOCK = " FOR UPDATE"
    SKIP_LOCKED_ROWS = " FOR UPDATE OF d, j SKIP LOCKED"

    def __init__(self, url: str) -> None:
        self._url = url
        self._location = _redacted(url)
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        with self._read() as db:
            check_schema(db.conn, self._location)  # StoreSchemaOutdated: refuse to start
        self.queries = PostgresQueries(self._read)

    @property
    def location(self) -> str:
        return self._location

    def _connection(self) -> Connection:
        if self._conn is not None and not self._conn.closed and _closed_by_server(self._conn):
            log.warning("PostgreSQL job store %s: the server closed our connection", self._location)
            self._conn.close()
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url)
        return self._conn

    @contextmanager
    def _read(self) -> Iterator[PgDb]:
        with self._lock:
            db = self._connection()
            try:
                yield PgDb(db)
            except psycopg.Error as exc:
                self._drop_if_broken(db, exc)
                raise unavailable(self._location, exc) from exc

    @contextmanager
    def _tx(self) -> Iterator[PgDb]:
        with self._lock:
            db = self._connection()
            try:
                with db.transaction():
                    yield PgDb(db)
            except psycopg.Error as exc:
                self._drop_if_broken(db, exc)
                raise unavailable(self._location, exc) from exc

    def _drop_if_broken(self, db: Connection, exc: psycopg.Error) -> None:
        if db.broken or isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            log.warning("PostgreSQL job store %s: connection dropped: %s", self._location, exc)
            db.close()
            self._conn = None

    def _lock_key(self, db: Db, key: str) -> None:
        """A transaction-scoped advisory lock on `key` (hash collisions only serialize more)."""
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def _announce(self, db: Db) -> None:
        db.execute("SELECT pg_notify(?, '')", (DISPATCH_CHANNEL,))

    def dispatch_listener(self) -> PgListener:
        return PgListener(self._url)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
