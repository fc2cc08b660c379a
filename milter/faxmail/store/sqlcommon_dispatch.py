"""faxmail's outbound queue in the job store, one implementation for both stores (a mixin over
`sqlcommon.SqlBase`): which job's next call waits, which is dialling, and the rounds (the
calls) of each job.

One row per job that still has a call to place or in flight (table `dispatch`): its round (the
number of the call: 1, 2, ...), the not-before time, the fallback that call uses, and — once a
dispatcher placed it — the host that did and its lease. The job's state stays "queued" while it
waits and while its call rings ("sending" once answered). The row goes when the job has its
result (`sqlcommon.settle`).

What keeps several hosts on one PostgreSQL store apart (SQLite's write lock does it alone):
- `claim_call` takes the locks on the line, then on the number (always in that order, so two
  claims never deadlock), counts the calls placed on that line and to that number, and only
  then claims the round with a conditional UPDATE (`host IS NULL`): of two hosts planning at
  once, the second sees the first's claim once it has the locks, so a line never carries more
  than its channels, a number never has two calls, and a round is claimed by exactly one host.
- `expire_claims` takes its rows with `SKIP_LOCKED_ROWS`: two hosts expiring at once settle
  different rows, never one row twice, and never wait on a row being claimed.
- per-job changes (requeue, cancel) lock the job's row first (`_locked_state`).
"""

from __future__ import annotations

import json
import time
from typing import ClassVar

from faxmail.store.model import DispatchRow, EventKind, JobState
from faxmail.store.sqlcommon import Db, SqlBase, add_event, count, has_result, settle
from faxmail.store.sqlite_schema import to_json

_COLUMNS = "d.job_id, d.round, d.not_before, d.fallback, d.host, d.lease_until, d.claimed, d.line"
_OPEN = (JobState.QUEUED, JobState.SENDING)
# The calls placed and not over: what a line's channels and a number's one call count.
_IN_FLIGHT = (
    "SELECT count(*) FROM dispatch d JOIN jobs j ON j.id = d.job_id"
    " WHERE d.host IS NOT NULL AND j.state IN (?, ?)"
)
# A queue row anew: round `round`, waiting, nobody's claim.
_PUT_ROW = (
    "INSERT INTO dispatch (job_id, round, not_before, fallback) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (job_id) DO UPDATE SET round = excluded.round,"
    " not_before = excluded.not_before, fallback = excluded.fallback,"
    " host = NULL, lease_until = NULL, claimed = NULL, line = NULL"
)


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


class SqlDispatch(SqlBase):
    """`DispatchStore` over the store's connection."""

    SKIP_LOCKED_ROWS: ClassVar[str]  # the clause that locks rows, passing over locked ones

    @staticmethod
    def _round(db: Db, job_id: str) -> int:
        sql = "SELECT count(*) FROM events WHERE job_id = ? AND kind = ?"
        return 1 + count(db, sql, (job_id, EventKind.REQUEUED))

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
            self._locked_state(db, job_id)  # two reports of one call, on two hosts: in turn
            if has_result(db, job_id) or self._round(db, job_id) != after_round:
                return False
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (JobState.QUEUED, job_id))
            if not_before is not None:
                kept = None if fallback is None else to_json(fallback)
                db.execute(_PUT_ROW, (job_id, after_round + 1, not_before, kept))
            add_event(db, job_id, EventKind.REQUEUED, {"round": after_round + 1, **detail})
            self._announce(db)
        return True

    def queue_job(self, job_id: str, not_before: float, **detail: object) -> None:
        """The job is in faxmail's queue: state "queued", its first call waiting (one step)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (JobState.QUEUED, job_id))
            db.execute(_PUT_ROW, (job_id, 1, not_before, None))
            add_event(db, job_id, EventKind.SPOOLED, {"state": JobState.QUEUED, **detail})
            self._announce(db)

    def dispatch_rows(self, *, claimed: bool | None = None) -> list[DispatchRow]:
        """The rows of jobs still open (queued or sending); only waiting or only placed ones
        with `claimed`. Oldest job first."""
        where = {None: "", True: " AND d.host IS NOT NULL", False: " AND d.host IS NULL"}
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM dispatch d JOIN jobs j ON j.id = d.job_id"  # noqa: S608
                f" WHERE j.state IN (?, ?){where[claimed]} ORDER BY j.created, j.id",
                _OPEN,
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
        with self._tx() as db:
            self._lock_key(db, "faxmail-line:" + line)
            self._lock_key(db, "faxmail-number:" + number)
            on_line = count(db, _IN_FLIGHT + " AND d.line = ?", (*_OPEN, line))
            to_number = count(db, _IN_FLIGHT + " AND j.number_e164 = ?", (*_OPEN, number))
            if on_line >= channels or to_number:
                return False
            claimed = db.execute(
                "UPDATE dispatch SET host = ?, lease_until = ?, claimed = ?, line = ?"
                " WHERE job_id = ? AND round = ? AND host IS NULL"
                " AND (SELECT state FROM jobs WHERE id = ?) = ?",
                (host, lease_until, time.time(), line, job_id, round_, job_id, JobState.QUEUED),
            ).rowcount
            if claimed:
                add_event(db, job_id, EventKind.DIALLING, {"round": round_, "host": host})
        return bool(claimed)

    def expire_claims(self, now: float) -> list[str]:
        """Settle the placed calls whose lease ran out without a report (their host died or
        lost the store): the job fails with its result claimed, the call is never placed
        again (it may have happened). The ids of the jobs settled."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT d.job_id, d.round, d.host FROM dispatch d JOIN jobs j ON j.id = d.job_id"  # noqa: S608
                " WHERE d.host IS NOT NULL AND d.lease_until < ? AND j.state IN (?, ?)"
                " AND NOT EXISTS (SELECT 1 FROM results r WHERE r.job_id = d.job_id)"
                " ORDER BY d.lease_until" + self.SKIP_LOCKED_ROWS,
                (now, *_OPEN),
            ).fetchall()
            for job_id, round_, host in rows:
                settle(db, job_id, JobState.FAILED)
                detail = {"state": JobState.FAILED, "round": round_, "host": host}
                add_event(db, job_id, EventKind.LEASE_EXPIRED, detail)
            if rows:
                self._announce(db)
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
                add_event(db, job_id, EventKind.UNDIALLED, {"round": round_, **detail})
                self._announce(db)

    def cancel_waiting(self, job_id: str, event: EventKind, **detail: object) -> bool:
        """Cancel a job whose next call waits in faxmail's queue (no call file anywhere): its
        result claimed as "cancelled" and its queue row gone, in one step. False when no
        call of it waits (a dispatcher placed it meanwhile, or the job is over)."""
        with self._tx() as db:
            state = self._locked_state(db, job_id)
            waiting = db.execute(
                "SELECT 1 FROM dispatch WHERE job_id = ? AND host IS NULL"  # noqa: S608
                + self.ROW_LOCK,
                (job_id,),
            ).fetchone()
            if waiting is None or state != JobState.QUEUED or has_result(db, job_id):
                return False
            settle(db, job_id, JobState.CANCELLED)
            add_event(db, job_id, event, {"state": JobState.CANCELLED, **detail})
        return True
