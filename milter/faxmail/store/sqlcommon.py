"""What the SQLite and the PostgreSQL job stores share: one implementation of the milter's
writes and reads, over a tiny connection protocol (`Db`) whose `execute` takes `?` placeholders.
SQLite's connection is one as it is; the PostgreSQL store hands out an adapter that rewrites
them to psycopg's `%s` (`postgres.py`).

What truly differs between the two stays in each store, as the hooks of `SqlBase`:
- `_lock_key(db, key)`: PostgreSQL takes an advisory lock until the transaction ends; SQLite holds
  its one write lock (BEGIN IMMEDIATE) already, so it takes nothing.
- `_announce(db)`: PostgreSQL tells the dispatchers of every host, when the transaction commits,
  that the queue changed (NOTIFY); SQLite has one host, whose wake socket does that.
- `ROW_LOCK`: PostgreSQL locks the rows a transaction reads before changing them (FOR UPDATE);
  SQLite needs no clause for that.
- `TIE`: the column that orders rows of the same second (SQLite's rowid, PostgreSQL's seq).
Connections, transactions, schema, migrations and error translation are each store's own.

Every piece of SQL text here is our own; values always travel as `?` parameters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from typing import Any, ClassVar, Protocol

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
from faxmail.store.sqlite_schema import JOB_COLUMNS, JOB_SELECT, job_from_row, marks, to_json

_COUNTED_MARKS = marks(len(COUNTED_STATES))  # placeholders for "state IN (...)"
_RATE_MARKS = marks(len(RATE_COUNTED_STATES))
_INSERT_JOB = f"INSERT INTO jobs ({JOB_SELECT}) VALUES ({marks(len(JOB_COLUMNS))})"  # noqa: S608


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """A connection that runs one statement with `?` placeholders."""

    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Cursor: ...


def add_event(db: Db, job_id: str, event: EventKind, detail: dict[str, object]) -> None:
    db.execute(
        "INSERT INTO events (job_id, at, kind, detail) VALUES (?, ?, ?, ?)",
        (job_id, time.time(), event, to_json(detail)),
    )


def has_result(db: Db, job_id: str) -> bool:
    return db.execute("SELECT 1 FROM results WHERE job_id = ?", (job_id,)).fetchone() is not None


def settle(db: Db, job_id: str, outcome: JobState) -> None:
    """Claim the job's result as `outcome`: final state, result row, no call left to place
    and no document left to fetch."""
    db.execute(
        "INSERT INTO results (job_id, outcome, claimed) VALUES (?, ?, ?)",
        (job_id, outcome, time.time()),
    )
    db.execute("UPDATE jobs SET state = ? WHERE id = ?", (outcome, job_id))
    db.execute("DELETE FROM dispatch WHERE job_id = ?", (job_id,))
    db.execute("DELETE FROM documents WHERE job_id = ?", (job_id,))


def count(db: Db, sql: str, args: Sequence[object]) -> int:
    row = db.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


class SqlBase:
    """The store's connection and what its dialect does differently (see the module)."""

    TIE: ClassVar[str]
    ROW_LOCK: ClassVar[str]

    def _read(self) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[Db]:
        raise NotImplementedError

    def _lock_key(self, db: Db, key: str) -> None:
        """Hold `key` until the transaction ends (for writers on other hosts)."""
        raise NotImplementedError

    def _announce(self, db: Db) -> None:
        """On commit, wake other hosts' dispatchers: a call may start now."""
        raise NotImplementedError

    def _locked_state(self, db: Db, job_id: str) -> JobState | None:
        """The job's state, its row locked until the transaction ends (None: no such job)."""
        sql = "SELECT state FROM jobs WHERE id = ?" + self.ROW_LOCK  # noqa: S608 - our own clause
        row = db.execute(sql, (job_id,)).fetchone()
        return None if row is None else JobState(row[0])


class SqlJobs(SqlBase):
    """`JobStore`'s admission, state changes and reads (the milter)."""

    @staticmethod
    def _exceeded(db: Db, sender: str, limits: RateLimits, now: float) -> RateExceeded | None:
        windows: tuple[tuple[int | None, int, Window], ...] = (
            (limits.per_hour, 3600, "hour"),
            (limits.per_day, 86400, "day"),
        )
        for limit, seconds, window in windows:
            if limit is None:
                continue
            found = count(
                db,
                "SELECT count(*) FROM jobs"  # noqa: S608 - only our own placeholders
                f" WHERE sender = ? AND created > ? AND state IN ({_RATE_MARKS})",
                (sender, now - seconds, *RATE_COUNTED_STATES),
            )
            if found >= limit:
                return RateExceeded(found, window)
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
            self._lock_key(db, "faxmail-sender:" + job.sender)
            if job.message_id:
                self._lock_key(db, "faxmail-message-id:" + job.message_id)
            row = (
                None
                if preview
                else db.execute(
                    "SELECT id FROM jobs WHERE message_id = ? AND digest = ? AND number_e164 = ?"  # noqa: S608
                    f" AND created > ? AND state IN ({_COUNTED_MARKS})"
                    f" ORDER BY created, {self.TIE} LIMIT 1",
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
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, job_id))
            add_event(db, job_id, event, {"state": state, **detail})

    def add_event(self, job_id: str, event: EventKind, **detail: object) -> None:
        with self._tx() as db:
            add_event(db, job_id, event, detail)

    def _jobs(self, where: str, args: Sequence[object]) -> list[Job]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {JOB_SELECT} FROM jobs WHERE {where}"  # noqa: S608 - our own text
                f" ORDER BY created DESC, {self.TIE} DESC",
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
                "SELECT at, kind, detail FROM events WHERE job_id = ?"  # noqa: S608
                f" ORDER BY at, {self.TIE}",
                (job_id,),
            ).fetchall()
        return [(at, EventKind(kind), json.loads(detail)) for at, kind, detail in rows]
