"""The job store in one SQLite file (WAL), shared by all milter threads, notify and the admin CLI.

It implements every protocol of `interface.py`: the milter's and notify's writes here, the
admin's reads in `sqlite_queries.py` (over the same connection and lock). Rate limits are
counted from the jobs themselves, so they survive restarts and are counted once however many
threads run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from faxmail.store.errors import StoreUnavailable
from faxmail.store.model import (
    COUNTED_STATES,
    RATE_COUNTED_STATES,
    Admission,
    Attempt,
    AttemptOutcome,
    Duplicate,
    EventKind,
    Job,
    JobState,
    RateExceeded,
    RateLimits,
    Window,
)
from faxmail.store.sqlite_claims import CLAIMS_SCHEMA, SqliteMessageIdClaims
from faxmail.store.sqlite_dispatch import DISPATCH_SCHEMA, SqliteDispatch, upgrade_dispatch
from faxmail.store.sqlite_documents import DOCUMENTS_SCHEMA, SqliteDocuments
from faxmail.store.sqlite_queries import SqliteQueries
from faxmail.store.sqlite_schema import (
    JOB_COLUMNS,
    JOB_SELECT,
    NOTIFY_SCHEMA,
    SCHEMA,
    attempt_from_row,
    job_from_row,
    marks,
    to_json,
)

_COUNTED_MARKS = marks(len(COUNTED_STATES))  # placeholders for "state IN (...)"
_RATE_MARKS = marks(len(RATE_COUNTED_STATES))


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


class SqliteStore(SqliteMessageIdClaims, SqliteDispatch, SqliteDocuments):
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

    # --- the milter ------------------------------------------------------------------------

    @staticmethod
    def _exceeded(
        db: sqlite3.Connection, sender: str, limits: RateLimits, now: float
    ) -> RateExceeded | None:
        windows: tuple[tuple[int | None, int, Window], ...] = (
            (limits.per_hour, 3600, "hour"),
            (limits.per_day, 86400, "day"),
        )
        for limit, seconds, window in windows:
            if limit is None:
                continue
            (count,) = db.execute(
                "SELECT count(*) FROM jobs"  # noqa: S608 - only our own placeholders
                f" WHERE sender = ? AND created > ? AND state IN ({_RATE_MARKS})",
                (sender, now - seconds, *RATE_COUNTED_STATES),
            ).fetchone()
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
            row = (
                None
                if preview
                else db.execute(
                    "SELECT id FROM jobs WHERE message_id = ? AND digest = ? AND number_e164 = ?"  # noqa: S608
                    f" AND created > ? AND state IN ({_COUNTED_MARKS})",
                    (
                        job.message_id,
                        job.digest,
                        job.number_e164,
                        job.created - duplicate_window_s,
                        *COUNTED_STATES,
                    ),
                ).fetchone()
            )
            if row is not None and job.message_id:
                self._event(db, row[0], EventKind.DUPLICATE, {"message_id": job.message_id})
                return Duplicate(row[0])
            exceeded = self._exceeded(db, job.sender, limits, job.created)
            if exceeded is not None:
                return exceeded
            values = asdict(job)
            db.execute(
                f"INSERT INTO jobs ({JOB_SELECT}) VALUES ({marks(len(JOB_COLUMNS))})",  # noqa: S608
                [values[c] for c in JOB_COLUMNS],
            )
            accepted = EventKind.PREVIEWED if preview else EventKind.ACCEPTED
            self._event(db, job.id, accepted, {"proof": job.proof, "pages": job.pages})
        return "admitted"

    @staticmethod
    def _event(
        db: sqlite3.Connection, job_id: str, event: EventKind, detail: dict[str, object]
    ) -> None:
        db.execute(
            "INSERT INTO events (job_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            (job_id, time.time(), event, to_json(detail)),
        )

    def set_state(self, job_id: str, state: JobState, event: EventKind, **detail: object) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, job_id))
            self._event(db, job_id, event, {"state": state, **detail})

    def add_event(self, job_id: str, event: EventKind, **detail: object) -> None:
        with self._tx() as db:
            self._event(db, job_id, event, detail)

    def _jobs(self, where: str, args: Sequence[object]) -> list[Job]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {JOB_SELECT} FROM jobs WHERE {where} ORDER BY created DESC",  # noqa: S608
                args,
            ).fetchall()
        return [job_from_row(row) for row in rows]

    def get(self, job_id: str) -> Job | None:
        found = self._jobs("id = ?", (job_id,))
        return found[0] if found else None

    def in_state(self, state: JobState) -> list[Job]:
        return self._jobs("state = ?", (state,))

    def events(self, job_id: str) -> list[tuple[float, EventKind, dict[str, object]]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT at, kind, detail FROM events WHERE job_id = ? ORDER BY at, rowid", (job_id,)
            ).fetchall()
        return [(at, EventKind(kind), json.loads(detail)) for at, kind, detail in rows]

    # --- faxmail-notify --------------------------------------------------------------------

    def record_attempt(
        self,
        job_id: str,
        round_: int,
        attempt: int,
        outcome: AttemptOutcome,
        state: JobState | None = None,
        **detail: object,
    ) -> None:
        """One call's outcome, as an attempts row and an event; `state`: the job's new state."""
        event = EventKind.of_attempt(AttemptOutcome(outcome))
        with self._tx() as db:
            db.execute(
                "INSERT INTO attempts (job_id, round, attempt, at, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, round_, attempt, time.time(), outcome, to_json(detail)),
            )
            if state is not None:
                db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, job_id))
            self._event(db, job_id, event, {"round": round_, **detail})

    def attempts(self, job_id: str) -> list[Attempt]:
        with self._read() as db:
            rows = db.execute(
                "SELECT round, attempt, at, outcome, detail FROM attempts WHERE job_id = ?"
                " ORDER BY at, rowid",
                (job_id,),
            ).fetchall()
        return [attempt_from_row(*row) for row in rows]

    def claim_result(
        self,
        job_id: str,
        outcome: JobState,
        event: EventKind,
        *,
        only_from: tuple[JobState, ...] = (),
        **detail: object,
    ) -> bool:
        """Make `outcome` ("sent"/"failed"/"cancelled") the job's final state and claim its one
        result mail; with `only_from`, only while the job is in one of those states.

        False when the job's result was claimed before (a repeated or late call) or its state
        is not in `only_from`: the caller must not send anything then. Claim and state change
        are one transaction.
        """
        with self._tx() as db:
            if db.execute("SELECT 1 FROM results WHERE job_id = ?", (job_id,)).fetchone():
                claimed = {"outcome": outcome, **detail}
                self._event(db, job_id, EventKind.RESULT_ALREADY_CLAIMED, claimed)
                return False
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if only_from and (row is None or row[0] not in only_from):
                return False
            db.execute(
                "INSERT INTO results (job_id, outcome, claimed) VALUES (?, ?, ?)",
                (job_id, outcome, time.time()),
            )
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (outcome, job_id))
            db.execute("DELETE FROM dispatch WHERE job_id = ?", (job_id,))  # no call is left
            db.execute("DELETE FROM documents WHERE job_id = ?", (job_id,))  # nor a fetch
            self._event(db, job_id, event, {"state": outcome, **detail})
        return True

    def result_delivered(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE results SET delivered = ? WHERE job_id = ? AND delivered IS NULL",
                (time.time(), job_id),
            )
            self._event(db, job_id, EventKind.RESULT_MAILED, {})

    def pending_results(self) -> list[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT job_id FROM results WHERE delivered IS NULL ORDER BY claimed"
            ).fetchall()
        return [job_id for (job_id,) in rows]

    def add_inbound(self, inbound_id: str, **detail: object) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO inbound (id, received, detail) VALUES (?, ?, ?)",
                (inbound_id, time.time(), to_json(detail)),
            )

    def inbound_delivered(self, inbound_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE inbound SET delivered = ? WHERE id = ? AND delivered IS NULL",
                (time.time(), inbound_id),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
