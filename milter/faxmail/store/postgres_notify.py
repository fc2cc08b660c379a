"""faxmail-notify's writes to the PostgreSQL job store: attempts, the one result mail per job,
received faxes. A mixin of `PostgresStore` (it needs `_read()` and `_tx()`); the behaviour is
`sqlite.py`'s, the job's row locked first where SQLite relied on its one write lock.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager

from faxmail.store.model import Attempt, AttemptOutcome, EventKind, JobState
from faxmail.store.postgres_schema import Connection
from faxmail.store.sqlite_schema import attempt_from_row, to_json


def add_event(db: Connection, job_id: str, event: EventKind, detail: dict[str, object]) -> None:
    db.execute(
        "INSERT INTO events (job_id, at, kind, detail) VALUES (%s, %s, %s, %s)",
        (job_id, time.time(), event, to_json(detail)),
    )


def locked_state(db: Connection, job_id: str) -> JobState | None:
    """The job's state, its row locked until the transaction ends (None: no such job)."""
    row = db.execute("SELECT state FROM jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()
    return None if row is None else JobState(row[0])


def has_result(db: Connection, job_id: str) -> bool:
    return db.execute("SELECT 1 FROM results WHERE job_id = %s", (job_id,)).fetchone() is not None


def settle(db: Connection, job_id: str, outcome: JobState) -> None:
    """Claim the job's result as `outcome`: final state, result row, no call left to place
    and no document left to fetch."""
    db.execute(
        "INSERT INTO results (job_id, outcome, claimed) VALUES (%s, %s, %s)",
        (job_id, outcome, time.time()),
    )
    db.execute("UPDATE jobs SET state = %s WHERE id = %s", (outcome, job_id))
    db.execute("DELETE FROM dispatch WHERE job_id = %s", (job_id,))
    db.execute("DELETE FROM documents WHERE job_id = %s", (job_id,))


class PostgresNotify:
    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def record_attempt(
        self,
        job_id: str,
        round_: int,
        attempt: int,
        outcome: AttemptOutcome,
        state: JobState | None = None,
        **detail: object,
    ) -> None:
        event = EventKind.of_attempt(AttemptOutcome(outcome))
        with self._tx() as db:
            db.execute(
                "INSERT INTO attempts (job_id, round, attempt, at, outcome, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (job_id, round_, attempt, time.time(), outcome, to_json(detail)),
            )
            if state is not None:
                db.execute("UPDATE jobs SET state = %s WHERE id = %s", (state, job_id))
            add_event(db, job_id, event, {"round": round_, **detail})

    def attempts(self, job_id: str) -> list[Attempt]:
        with self._read() as db:
            rows = db.execute(
                "SELECT round, attempt, at, outcome, detail FROM attempts WHERE job_id = %s"
                " ORDER BY at, seq",
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
        """As SqliteStore.claim_result: the one result mail, claimed with the final state."""
        with self._tx() as db:
            state = locked_state(db, job_id)  # a second claimer on another host waits here
            if has_result(db, job_id):
                claimed = {"outcome": outcome, **detail}
                add_event(db, job_id, EventKind.RESULT_ALREADY_CLAIMED, claimed)
                return False
            if only_from and (state is None or state not in only_from):
                return False
            settle(db, job_id, outcome)
            add_event(db, job_id, event, {"state": outcome, **detail})
        return True

    def result_delivered(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE results SET delivered = %s WHERE job_id = %s AND delivered IS NULL",
                (time.time(), job_id),
            )
            add_event(db, job_id, EventKind.RESULT_MAILED, {})

    def pending_results(self) -> list[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT job_id FROM results WHERE delivered IS NULL ORDER BY claimed"
            ).fetchall()
        return [job_id for (job_id,) in rows]

    def add_inbound(self, inbound_id: str, **detail: object) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO inbound (id, received, detail) VALUES (%s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                (inbound_id, time.time(), to_json(detail)),
            )

    def inbound_delivered(self, inbound_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE inbound SET delivered = %s WHERE id = %s AND delivered IS NULL",
                (time.time(), inbound_id),
            )
