"""faxmail's outbound queue in the job store: which job's next call waits, which is dialling,
and the rounds (the calls) of each job.

One row per job that still has a call to place or in flight (table `dispatch`): its round (the
number of the call: 1, 2, ...), the not-before time, the fallback that call uses, and — once a
dispatcher placed it — the host that did and its lease. The job's state stays "queued" while it
waits and while its call rings ("sending" once answered), as it did when Asterisk held the
queue. The row goes when the job has its result (claim_result).

The claim is one conditional UPDATE inside the store's write lock (BEGIN IMMEDIATE), which also
checks the line's channels and the number against the calls placed already: the same contract
as the PostgreSQL store, where several hosts share the queue. The protocol is
`interface.DispatchStore`; this is a mixin of `SqliteStore` (it needs `_read()` and `_tx()`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import AbstractContextManager

from faxmail.store.model import DispatchRow, EventKind, JobState
from faxmail.store.sqlite_schema import to_json

DISPATCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatch (
    job_id TEXT PRIMARY KEY,
    round INTEGER NOT NULL,          -- the call this row is about: 1, 2, ...
    not_before REAL NOT NULL,        -- no call before (a retry's delay, a send-later time)
    fallback TEXT,                   -- JSON: what this call changes (ecm, max_rate, t38)
    host TEXT,                       -- NULL: waiting; else the dispatcher that placed it
    lease_until REAL,                -- the claim's lease (several hosts: a dead one's expires)
    claimed REAL,
    line TEXT                        -- the line the placed call went out on
);
CREATE INDEX IF NOT EXISTS dispatch_host ON dispatch (host);
"""

# The calls placed and not over: what a line's channels and a number's one call count.
_IN_FLIGHT = (
    "SELECT count(*) FROM dispatch d JOIN jobs j ON j.id = d.job_id"
    " WHERE d.host IS NOT NULL AND j.state IN (?, ?)"
)


def upgrade_dispatch(db: sqlite3.Connection) -> None:
    """Add the columns a store made by an older version lacks (its rows kept as they were)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(dispatch)")}
    if "line" not in columns:
        db.execute("ALTER TABLE dispatch ADD COLUMN line TEXT")


_COLUMNS = "d.job_id, d.round, d.not_before, d.fallback, d.host, d.lease_until, d.claimed, d.line"


def queue_row(values: tuple[object, ...]) -> DispatchRow:
    job_id, round_, not_before, fallback, host, lease, claimed, line = values
    return DispatchRow(
        job_id=str(job_id),
        round=int(str(round_)),
        not_before=float(str(not_before)),
        fallback=json.loads(str(fallback)) if fallback is not None else None,
        host=None if host is None else str(host),
        lease_until=None if lease is None else float(str(lease)),
        claimed=None if claimed is None else float(str(claimed)),
        line=None if line is None else str(line),
    )


class SqliteDispatch:
    """`DispatchStore` over the store's SQLite connection (mixed into SqliteStore)."""

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    @staticmethod
    def _event(
        db: sqlite3.Connection, job_id: str, event: EventKind, detail: dict[str, object]
    ) -> None:
        raise NotImplementedError

    @staticmethod
    def _round(db: sqlite3.Connection, job_id: str) -> int:
        (requeued,) = db.execute(
            "SELECT count(*) FROM events WHERE job_id = ? AND kind = ?",
            (job_id, EventKind.REQUEUED),
        ).fetchone()
        return int(requeued) + 1

    def current_round(self, job_id: str) -> int:
        """1 for the milter's call file, +1 for each fax-level retry queued since."""
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
        """Claim the retry that follows `after_round` (state back to "queued"); with
        `not_before`, the next call waits in faxmail's queue until then, with `fallback`.

        False when that retry was claimed already or the job has its result: a repeated call
        must not queue a second call.
        """
        with self._tx() as db:
            done = db.execute("SELECT 1 FROM results WHERE job_id = ?", (job_id,)).fetchone()
            if done or self._round(db, job_id) != after_round:
                return False
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (JobState.QUEUED, job_id))
            if not_before is not None:
                db.execute(
                    "INSERT OR REPLACE INTO dispatch (job_id, round, not_before, fallback)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        job_id,
                        after_round + 1,
                        not_before,
                        None if fallback is None else to_json(fallback),
                    ),
                )
            self._event(db, job_id, EventKind.REQUEUED, {"round": after_round + 1, **detail})
        return True

    def queue_job(self, job_id: str, not_before: float, **detail: object) -> None:
        """The job is in faxmail's queue: state "queued", its first call waiting (one step)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (JobState.QUEUED, job_id))
            db.execute(
                "INSERT OR REPLACE INTO dispatch (job_id, round, not_before) VALUES (?, 1, ?)",
                (job_id, not_before),
            )
            self._event(db, job_id, EventKind.SPOOLED, {"state": JobState.QUEUED, **detail})

    def dispatch_rows(self, *, claimed: bool | None = None) -> list[DispatchRow]:
        """The rows of jobs still open (queued or sending); only waiting or only placed ones
        with `claimed`. Oldest job first."""
        where = {None: "", True: " AND d.host IS NOT NULL", False: " AND d.host IS NULL"}
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM dispatch d JOIN jobs j ON j.id = d.job_id"  # noqa: S608
                f" WHERE j.state IN (?, ?){where[claimed]} ORDER BY j.created, j.id",
                (JobState.QUEUED, JobState.SENDING),
            ).fetchall()
        return [queue_row(tuple(row)) for row in rows]

    def dispatch_row(self, job_id: str) -> DispatchRow | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM dispatch d WHERE d.job_id = ?",  # noqa: S608
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
        """Claim call `round_` of a waiting queued job for `host`; False: someone else has it,
        the job is no longer waiting (cancelled, over), `line` carries `channels` calls
        already or `number` has a call placed."""
        open_ = (JobState.QUEUED, JobState.SENDING)
        with self._tx() as db:
            (on_line,) = db.execute(_IN_FLIGHT + " AND d.line = ?", (*open_, line)).fetchone()
            (to_number,) = db.execute(
                _IN_FLIGHT + " AND j.number_e164 = ?", (*open_, number)
            ).fetchone()
            if on_line >= channels or to_number:
                return False
            claimed = db.execute(
                "UPDATE dispatch SET host = ?, lease_until = ?, claimed = ?, line = ?"
                " WHERE job_id = ? AND round = ? AND host IS NULL"
                " AND (SELECT state FROM jobs WHERE id = ?) = ?",
                (host, lease_until, time.time(), line, job_id, round_, job_id, JobState.QUEUED),
            ).rowcount
            if claimed:
                self._event(db, job_id, EventKind.DIALLING, {"round": round_, "host": host})
        return bool(claimed)

    def expire_claims(self, now: float) -> list[str]:
        """Settle the placed calls whose lease ran out without a report (their host died or
        lost the store): the job fails with its result claimed, the call is never placed
        again (it may have happened). The ids of the jobs settled."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT d.job_id, d.round, d.host FROM dispatch d JOIN jobs j ON j.id = d.job_id"
                " WHERE d.host IS NOT NULL AND d.lease_until < ? AND j.state IN (?, ?)"
                " AND NOT EXISTS (SELECT 1 FROM results r WHERE r.job_id = d.job_id)"
                " ORDER BY d.lease_until",
                (now, JobState.QUEUED, JobState.SENDING),
            ).fetchall()
            for job_id, round_, host in rows:
                db.execute(
                    "INSERT INTO results (job_id, outcome, claimed) VALUES (?, ?, ?)",
                    (job_id, JobState.FAILED, time.time()),
                )
                db.execute("UPDATE jobs SET state = ? WHERE id = ?", (JobState.FAILED, job_id))
                db.execute("DELETE FROM dispatch WHERE job_id = ?", (job_id,))
                detail = {"state": JobState.FAILED, "round": round_, "host": host}
                self._event(db, job_id, EventKind.LEASE_EXPIRED, detail)
        return [str(job_id) for job_id, _, _ in rows]

    def release_call(self, job_id: str, round_: int, **detail: object) -> None:
        """Give a claim back: its call file never reached outgoing/ (a local fault)."""
        with self._tx() as db:
            released = db.execute(
                "UPDATE dispatch SET host = NULL, lease_until = NULL, claimed = NULL, line = NULL"
                " WHERE job_id = ? AND round = ? AND host IS NOT NULL",
                (job_id, round_),
            ).rowcount
            if released:
                self._event(db, job_id, EventKind.UNDIALLED, {"round": round_, **detail})

    def cancel_waiting(self, job_id: str, event: EventKind, **detail: object) -> bool:
        """Cancel a job whose next call waits in faxmail's queue (no call file anywhere): its
        result claimed as "cancelled" and its queue row gone, in one step. False when no
        call of it waits (a dispatcher placed it meanwhile, or the job is over)."""
        with self._tx() as db:
            waiting = db.execute(
                "SELECT 1 FROM dispatch d JOIN jobs j ON j.id = d.job_id"
                " WHERE d.job_id = ? AND d.host IS NULL AND j.state = ?"
                " AND NOT EXISTS (SELECT 1 FROM results r WHERE r.job_id = d.job_id)",
                (job_id, JobState.QUEUED),
            ).fetchone()
            if waiting is None:
                return False
            db.execute(
                "INSERT INTO results (job_id, outcome, claimed) VALUES (?, ?, ?)",
                (job_id, JobState.CANCELLED, time.time()),
            )
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (JobState.CANCELLED, job_id))
            db.execute("DELETE FROM dispatch WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM documents WHERE job_id = ?", (job_id,))
            self._event(db, job_id, event, {"state": JobState.CANCELLED, **detail})
        return True
