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
- the dispatch claim (`postgres_dispatch.py`) locks the line and the number.
One connection per process behind a lock, as SQLite's; a broken connection is dropped and
opened again by the next call. Every driver error becomes `StoreUnavailable`.
"""

from __future__ import annotations

import json
import logging
import select
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict

import psycopg

from faxmail.store.errors import StoreUnavailable
from faxmail.store.model import (
    COUNTED_STATES,
    RATE_COUNTED_STATES,
    Admission,
    Duplicate,
    EventKind,
    Job,
    JobState,
    RateExceeded,
    RateLimits,
    Window,
)
from faxmail.store.postgres_dispatch import PostgresDispatch, advisory_lock
from faxmail.store.postgres_notify import PostgresNotify, add_event
from faxmail.store.postgres_queries import PostgresQueries
from faxmail.store.postgres_schema import Connection, check_schema
from faxmail.store.sqlite_schema import JOB_COLUMNS, JOB_SELECT, job_from_row

log = logging.getLogger("faxmail.store")

CONNECT_TIMEOUT_S = 5  # a database that is down answers 451 in seconds, not minutes
STATEMENT_TIMEOUT = "30s"  # a lock held by a stuck host must not hang an SMTP session
_COUNTED = list(COUNTED_STATES)
_RATE_COUNTED = list(RATE_COUNTED_STATES)
_INSERT_JOB = f"INSERT INTO jobs ({JOB_SELECT}) VALUES ({','.join(['%s'] * len(JOB_COLUMNS))})"  # noqa: S608


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


class PostgresStore(PostgresNotify, PostgresDispatch):
    def __init__(self, url: str) -> None:
        self._url = url
        self._location = _redacted(url)
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        with self._read() as db:
            check_schema(db, self._location)  # StoreSchemaOutdated: refuse to start
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
    def _read(self) -> Iterator[Connection]:
        with self._lock:
            db = self._connection()
            try:
                yield db
            except psycopg.Error as exc:
                self._drop_if_broken(db, exc)
                raise unavailable(self._location, exc) from exc

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock:
            db = self._connection()
            try:
                with db.transaction():
                    yield db
            except psycopg.Error as exc:
                self._drop_if_broken(db, exc)
                raise unavailable(self._location, exc) from exc

    def _drop_if_broken(self, db: Connection, exc: psycopg.Error) -> None:
        if db.broken or isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            log.warning("PostgreSQL job store %s: connection dropped: %s", self._location, exc)
            db.close()
            self._conn = None

    # --- the milter ------------------------------------------------------------------------

    @staticmethod
    def _exceeded(
        db: Connection, sender: str, limits: RateLimits, now: float
    ) -> RateExceeded | None:
        windows: tuple[tuple[int | None, int, Window], ...] = (
            (limits.per_hour, 3600, "hour"),
            (limits.per_day, 86400, "day"),
        )
        for limit, seconds, window in windows:
            if limit is None:
                continue
            row = db.execute(
                "SELECT count(*) FROM jobs WHERE sender = %s AND created > %s AND state = ANY(%s)",
                (sender, now - seconds, _RATE_COUNTED),
            ).fetchone()
            count = int(row[0]) if row else 0
            if count >= limit:
                return RateExceeded(count, window)
        return None

    def rate_exceeded(self, sender: str, limits: RateLimits, now: float) -> RateExceeded | None:
        with self._read() as db:
            return self._exceeded(db, sender.lower(), limits, now)

    def admit(self, job: Job, limits: RateLimits, duplicate_window_s: float) -> Admission:
        """Insert `job` ("queueing", or "previewed": no duplicate check) unless it is a resent
        duplicate or over the rate limit."""
        preview = job.state == JobState.PREVIEWED
        with self._tx() as db:
            # Always sender first, then Message-ID: one order, so no two admissions deadlock.
            advisory_lock(db, "faxmail-sender:" + job.sender)
            if job.message_id:
                advisory_lock(db, "faxmail-message-id:" + job.message_id)
            row = (
                None
                if preview
                else db.execute(
                    "SELECT id FROM jobs WHERE message_id = %s AND digest = %s AND number_e164 = %s"
                    " AND created > %s AND state = ANY(%s) ORDER BY created LIMIT 1",
                    (
                        job.message_id,
                        job.digest,
                        job.number_e164,
                        job.created - duplicate_window_s,
                        _COUNTED,
                    ),
                ).fetchone()
            )
            if row is not None and job.message_id:
                add_event(db, row[0], EventKind.DUPLICATE, {"message_id": job.message_id})
                return Duplicate(row[0])
            exceeded = self._exceeded(db, job.sender, limits, job.created)
            if exceeded is not None:
                return exceeded
            values = asdict(job)
            db.execute(_INSERT_JOB, [values[c] for c in JOB_COLUMNS])
            accepted = EventKind.PREVIEWED if preview else EventKind.ACCEPTED
            add_event(db, job.id, accepted, {"proof": job.proof, "pages": job.pages})
        return "admitted"

    def set_state(self, job_id: str, state: JobState, event: EventKind, **detail: object) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = %s WHERE id = %s", (state, job_id))
            add_event(db, job_id, event, {"state": state, **detail})

    def add_event(self, job_id: str, event: EventKind, **detail: object) -> None:
        with self._tx() as db:
            add_event(db, job_id, event, detail)

    def _jobs(self, where: str, args: Sequence[object]) -> list[Job]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {JOB_SELECT} FROM jobs WHERE {where} ORDER BY created DESC, seq DESC",  # noqa: S608
                args,
            ).fetchall()
        return [job_from_row(row) for row in rows]

    def get(self, job_id: str) -> Job | None:
        found = self._jobs("id = %s", (job_id,))
        return found[0] if found else None

    def in_state(self, state: JobState) -> list[Job]:
        return self._jobs("state = %s", (state,))

    def events(self, job_id: str) -> list[tuple[float, EventKind, dict[str, object]]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT at, kind, detail FROM events WHERE job_id = %s ORDER BY at, seq", (job_id,)
            ).fetchall()
        return [(at, EventKind(kind), json.loads(detail)) for at, kind, detail in rows]

    # --- Message-ID claims (policy unsigned_recipients) --------------------------------------

    def claim_message_id(self, message_id: str, transaction: str, now: float) -> bool:
        with self._tx() as db:
            db.execute(
                "INSERT INTO message_id_claims (message_id, txn, claimed) VALUES (%s, %s, %s)"
                " ON CONFLICT (message_id) DO NOTHING",
                (message_id, transaction, now),
            )
            row = db.execute(
                "SELECT txn FROM message_id_claims WHERE message_id = %s", (message_id,)
            ).fetchone()
        return row is not None and row[0] == transaction

    def release_message_id(self, message_id: str, transaction: str) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM message_id_claims WHERE message_id = %s AND txn = %s",
                (message_id, transaction),
            )

    def message_id_claimed(self, message_id: str) -> bool:
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM message_id_claims WHERE message_id = %s", (message_id,)
            ).fetchone()
        return row is not None

    # --- the fax document, for an Asterisk on another host -----------------------------------

    def put_document(self, job_id: str, tiff: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO documents (job_id, stored, tiff) VALUES (%s, %s, %s)"
                " ON CONFLICT (job_id)"
                " DO UPDATE SET stored = excluded.stored, tiff = excluded.tiff",
                (job_id, time.time(), tiff),
            )

    def document(self, job_id: str) -> bytes | None:
        with self._read() as db:
            row = db.execute("SELECT tiff FROM documents WHERE job_id = %s", (job_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
