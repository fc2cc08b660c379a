"""faxmail-notify's writes and reads, the signed Message-ID claims and the fax documents: one
implementation for both job stores (a mixin over `sqlcommon.SqlBase`).

The upserts are the SQL both engines run alike (`ON CONFLICT ... DO NOTHING / DO UPDATE`,
SQLite since 3.24). A claim of a job's result first locks the job's row (`_locked_state`), so
that a second claimer on another host waits for the first; SQLite's write lock does that alone.
"""

from __future__ import annotations

import time

from faxmail.store.model import Attempt, AttemptOutcome, EventKind, JobState
from faxmail.store.sqlcommon import SqlBase, add_event, has_result, settle
from faxmail.store.sqlite_schema import attempt_from_row, to_json


class SqlNotify(SqlBase):
    """`NotifyStore`'s attempts, result claims and received faxes."""

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
            add_event(db, job_id, event, {"round": round_, **detail})

    def attempts(self, job_id: str) -> list[Attempt]:
        with self._read() as db:
            rows = db.execute(
                "SELECT round, attempt, at, outcome, detail FROM attempts WHERE job_id = ?"  # noqa: S608
                f" ORDER BY at, {self.TIE}",
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
            state = self._locked_state(db, job_id)  # a second claimer on another host waits
            if has_result(db, job_id):
                claimed = {"outcome": outcome, **detail}
                add_event(db, job_id, EventKind.RESULT_ALREADY_CLAIMED, claimed)
                return False
            if only_from and (state is None or state not in only_from):
                return False
            settle(db, job_id, outcome)
            add_event(db, job_id, event, {"state": outcome, **detail})
            self._announce(db)  # its line and number are free
        return True

    def result_delivered(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE results SET delivered = ? WHERE job_id = ? AND delivered IS NULL",
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
                "INSERT INTO inbound (id, received, detail) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (inbound_id, time.time(), to_json(detail)),
            )

    def inbound_delivered(self, inbound_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE inbound SET delivered = ? WHERE id = ? AND delivered IS NULL",
                (time.time(), inbound_id),
            )


class SqlMessageIdClaims(SqlBase):
    """`MessageIdClaims` (policy `unsigned_recipients`; the table is in `sqlite_claims.py`)."""

    def claim_message_id(self, message_id: str, transaction: str, now: float) -> bool:
        """True if `transaction` holds `message_id` now (it was free, or is its own already);
        False if another transaction claimed it first."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO message_id_claims (message_id, txn, claimed) VALUES (?, ?, ?)"
                " ON CONFLICT (message_id) DO NOTHING",
                (message_id, transaction, now),
            )
            row = db.execute(
                "SELECT txn FROM message_id_claims WHERE message_id = ?", (message_id,)
            ).fetchone()
        return row is not None and row[0] == transaction

    def release_message_id(self, message_id: str, transaction: str) -> None:
        """Give a claim back: its transaction faxed nothing (refused, or tried again later)."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM message_id_claims WHERE message_id = ? AND txn = ?",
                (message_id, transaction),
            )

    def message_id_claimed(self, message_id: str) -> bool:
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM message_id_claims WHERE message_id = ?", (message_id,)
            ).fetchone()
        return row is not None


class SqlDocuments(SqlBase):
    """`DocumentStore`: the queued faxes' TIFFs, for an Asterisk on another host."""

    def put_document(self, job_id: str, tiff: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO documents (job_id, stored, tiff) VALUES (?, ?, ?)"
                " ON CONFLICT (job_id)"
                " DO UPDATE SET stored = excluded.stored, tiff = excluded.tiff",
                (job_id, time.time(), tiff),
            )

    def document(self, job_id: str) -> bytes | None:
        with self._read() as db:
            row = db.execute("SELECT tiff FROM documents WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else bytes(row[0])
