"""The job store in one SQLite file (WAL), shared by all milter threads, notify and the admin CLI.

It implements every protocol of `interface.py` with the SQL it shares with the PostgreSQL store
(`sqlcommon*.py`); here are its connection, its transactions (BEGIN IMMEDIATE) and its schema;
the admin's reads are `sqlite_queries.py` (over the same connection and lock). Rate limits are
counted from the jobs themselves, so they survive restarts and are counted once however many
threads run.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from faxmail.store.errors import StoreUnavailable
from faxmail.store.interface import DispatchListener
from faxmail.store.model import Job, RateLimits  # noqa: F401 - importable from here, as before
from faxmail.store.sqlcommon import Db, SqlJobs
from faxmail.store.sqlcommon_dispatch import SqlDispatch
from faxmail.store.sqlcommon_notify import SqlDocuments, SqlMessageIdClaims, SqlNotify
from faxmail.store.sqlite_claims import CLAIMS_SCHEMA
from faxmail.store.sqlite_dispatch import DISPATCH_SCHEMA, upgrade_dispatch
from faxmail.store.sqlite_documents import DOCUMENTS_SCHEMA
from faxmail.store.sqlite_queries import SqliteQueries
from faxmail.store.sqlite_schema import NOTIFY_SCHEMA, SCHEMA


def unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    """The store-neutral form of a SQLite fault (locked, I/O error, disk full, ...)."""
    full = getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return StoreUnavailable(f"SQLite job store: {exc}", full=full)


@contextmanager
def _neutral() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise unavailable(exc) from exc


class SqliteStore(SqlJobs, SqlNotify, SqlMessageIdClaims, SqlDocuments, SqlDispatch):
    # SQLite's own: rows of one second in rowid order; the write lock that BEGIN IMMEDIATE
    # takes serializes every writer, so no row lock and no named lock is needed.
    TIE = "rowid"
    ROW_LOCK = ""
    SKIP_LOCKED_ROWS = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection behind a lock: libmilter starts a thread per SMTP connection, and
        # per-thread connections would leak with those threads. Only fax mail gets here.
        self._lock = threading.RLock()
        with _neutral():
            self._conn = sqlite3.connect(
                path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a 250 promises the job is on disk
            self._conn.executescript(
                SCHEMA + NOTIFY_SCHEMA + CLAIMS_SCHEMA + DISPATCH_SCHEMA + DOCUMENTS_SCHEMA
            )
            upgrade_dispatch(self._conn)
        self.queries = SqliteQueries(self._read)

    @property
    def location(self) -> str:
        return str(self.path)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _neutral():
            yield self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _neutral():
            db = self._conn
            db.execute("BEGIN IMMEDIATE")  # the write lock now: check-then-insert is atomic
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _lock_key(self, db: Db, key: str) -> None:
        pass  # BEGIN IMMEDIATE holds the one write lock already

    def _announce(self, db: Db) -> None:
        pass  # one host: notify and the milter poke its dispatcher's wake socket

    def dispatch_listener(self) -> DispatchListener | None:
        return None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
