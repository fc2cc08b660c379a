"""faxmail's outbound queue in the PostgreSQL job store, shared by the dispatchers of several
hosts. The behaviour is `sqlite_dispatch.py`'s; what keeps hosts apart:

- `claim_call` takes advisory locks on the line, then on the number (always in that order, so
  two claims never deadlock), counts the calls placed on that line and to that number, and only
  then claims the round with a conditional UPDATE (`host IS NULL`): of two hosts planning at
  once, the second sees the first's claim once it has the locks, so a line never carries more
  than its channels, a number never has two calls, and a round is claimed by exactly one host.
  (SKIP LOCKED would suit "take any next job"; here the scheduler already chose the job, so
  the question is whether *that* claim still fits, which needs the counts under a lock.)
- `expire_claims` takes rows FOR UPDATE SKIP LOCKED: two hosts expiring at once settle
  different rows, never one row twice, and never wait on a row being claimed.
- per-job changes (requeue, cancel) lock the job's row first.
A mixin of `PostgresStore` (it needs `_read()` and `_tx()`).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager

from faxmail.store.model import DispatchRow, EventKind, JobState
from faxmail.store.postgres_notify import add_event, has_result, locked_state, settle
from faxmail.store.postgres_schema import Connection
from faxmail.store.sqlite_dispatch import queue_row
from faxmail.store.sqlite_schema import to_json

_COLUMNS = "d.job_id, d.round, d.not_before, d.fallback, d.host, d.lease_until, d.claimed, d.line"
_OPEN = [JobState.QUEUED, JobState.SENDING]
_IN_FLIGHT = (
    "SELECT count(*) FROM dispatch d JOIN jobs j ON j.id = d.job_id"
    " WHERE d.host IS NOT NULL AND j.state = ANY(%s)"
)
# A queue row anew: round `round`, waiting, nobody's claim (SQLite's INSERT OR REPLACE).
_PUT_ROW = (
    "INSERT INTO dispatch (job_id, round, not_before, fallback) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (job_id) DO UPDATE SET round = excluded.round,"
    " not_before = excluded.not_before, fallback = excluded.fallback,"
    " host = NULL, lease_until = NULL, claimed = NULL, line = NULL"
)


def advisory_lock(db: Connection, key: str) -> None:
    """A lock on `key` until the transaction ends (hash collisions only serialize more)."""
    db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


def _count(db: Connection, sql: str, args: tuple[object, ...]) -> int:
    row = db.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


class PostgresDispatch:
    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    @staticmethod
    def _round(db: Connection, job_id: str) -> int:
        return 1 + _count(
            db,
            "SELECT count(*) FROM events WHERE job_id = %s AND kind = %s",
            (job_id, EventKind.REQUEUED),
        )

    def current_round(self, job_id: str) -> int:
        with self._read() as db:
            return self._round(db, job_id)

    def claim_requeue(
        self,
        job_id: str,
        after_round: int,
        *,
        not_before: float | None = None,
        fallback: dict[str, object] | None = None,
        **detail: object,
    ) -> bool:
        with self._tx() as db:
            locked_state(db, job_id)  # two reports of one call, on two hosts: one after the other
            if has_result(db, job_id) or self._round(db, job_id) != after_round:
                return False
            db.execute("UPDATE jobs SET state = %s WHERE id = %s", (JobState.QUEUED, job_id))
            if not_before is not None:
                kept = None if fallback is None else to_json(fallback)
                db.execute(_PUT_ROW, (job_id, after_round + 1, not_before, kept))
            add_event(db, job_id, EventKind.REQUEUED, {"round": after_round + 1, **detail})
        return True

    def queue_job(self, job_id: str, not_before: float, **detail: object) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = %s WHERE id = %s", (JobState.QUEUED, job_id))
            db.execute(_PUT_ROW, (job_id, 1, not_before, None))
            add_event(db, job_id, EventKind.SPOOLED, {"state": JobState.QUEUED, **detail})

    def dispatch_rows(self, *, claimed: bool | None = None) -> list[DispatchRow]:
        where = {None: "", True: " AND d.host IS NOT NULL", False: " AND d.host IS NULL"}
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM dispatch d JOIN jobs j ON j.id = d.job_id"  # noqa: S608
                f" WHERE j.state = ANY(%s){where[claimed]} ORDER BY j.created, j.id",
                (_OPEN,),
            ).fetchall()
        return [queue_row(tuple(row)) for row in rows]

    def dispatch_row(self, job_id: str) -> DispatchRow | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM dispatch d WHERE d.job_id = %s",  # noqa: S608
                (job_id,),
            ).fetchone()
        return None if row is None else queue_row(tuple(row))

    def claim_call(
        self,
        job_id: str,
        round_: int,
        host: str,
        lease_until: float,
        *,
        number: str,
        line: str,
        channels: int,
    ) -> bool:
        with self._tx() as db:
            advisory_lock(db, "faxmail-line:" + line)
            advisory_lock(db, "faxmail-number:" + number)
            on_line = _count(db, _IN_FLIGHT + " AND d.line = %s", (_OPEN, line))
            to_number = _count(db, _IN_FLIGHT + " AND j.number_e164 = %s", (_OPEN, number))
            if on_line >= channels or to_number:
                return False
            claimed = db.execute(
                "UPDATE dispatch SET host = %s, lease_until = %s, claimed = %s, line = %s"
                " WHERE job_id = %s AND round = %s AND host IS NULL"
                " AND (SELECT state FROM jobs WHERE id = %s) = %s",
                (host, lease_until, time.time(), line, job_id, round_, job_id, JobState.QUEUED),
            ).rowcount
            if claimed:
                add_event(db, job_id, EventKind.DIALLING, {"round": round_, "host": host})
        return bool(claimed)

    def expire_claims(self, now: float) -> list[str]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT d.job_id, d.round, d.host FROM dispatch d JOIN jobs j ON j.id = d.job_id"
                " WHERE d.host IS NOT NULL AND d.lease_until < %s AND j.state = ANY(%s)"
                " AND NOT EXISTS (SELECT 1 FROM results r WHERE r.job_id = d.job_id)"
                " ORDER BY d.lease_until FOR UPDATE OF d, j SKIP LOCKED",
                (now, _OPEN),
            ).fetchall()
            for job_id, round_, host in rows:
                settle(db, job_id, JobState.FAILED)
                detail = {"state": JobState.FAILED, "round": round_, "host": host}
                add_event(db, job_id, EventKind.LEASE_EXPIRED, detail)
        return [str(job_id) for job_id, _, _ in rows]

    def release_call(self, job_id: str, round_: int, **detail: object) -> None:
        with self._tx() as db:
            released = db.execute(
                "UPDATE dispatch SET host = NULL, lease_until = NULL, claimed = NULL, line = NULL"
                " WHERE job_id = %s AND round = %s AND host IS NOT NULL",
                (job_id, round_),
            ).rowcount
            if released:
                add_event(db, job_id, EventKind.UNDIALLED, {"round": round_, **detail})

    def cancel_waiting(self, job_id: str, event: EventKind, **detail: object) -> bool:
        with self._tx() as db:
            state = locked_state(db, job_id)
            waiting = db.execute(
                "SELECT 1 FROM dispatch WHERE job_id = %s AND host IS NULL FOR UPDATE", (job_id,)
            ).fetchone()
            if waiting is None or state != JobState.QUEUED or has_result(db, job_id):
                return False
            settle(db, job_id, JobState.CANCELLED)
            add_event(db, job_id, event, {"state": JobState.CANCELLED, **detail})
        return True
