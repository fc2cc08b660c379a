"""Signed Message-IDs that may be faxed in one SMTP transaction only.

A mail vouched for by a DKIM signature that leaves To:/Cc: unsigned (Microsoft 365 signs
neither) could be re-sent to any fax number by whoever holds a copy. The first transaction that
faxes such a mail claims its signed Message-ID here, in the job store, so that any later
transaction is refused, across restarts (policy `unsigned_recipients`).

The protocol is `interface.MessageIdClaims`; this is its SQLite table and a mixin that
`SqliteStore` inherits (it needs only the store's `_read()` and `_tx()`).
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager

CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS message_id_claims (
    message_id TEXT PRIMARY KEY,     -- the signed Message-ID, without whitespace
    txn TEXT NOT NULL,               -- the one decision (SMTP transaction) that may fax it
    claimed REAL NOT NULL
);
"""


class SqliteMessageIdClaims:
    """`MessageIdClaims` over the store's SQLite connection (mixed into SqliteStore)."""

    # SqliteStore's: its connection under its lock, and a BEGIN IMMEDIATE transaction on it
    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def claim_message_id(self, message_id: str, transaction: str, now: float) -> bool:
        """True if `transaction` holds `message_id` now (it was free, or is its own already);
        False if another transaction claimed it first."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO message_id_claims (message_id, txn, claimed)"
                " VALUES (?, ?, ?)",
                (message_id, transaction, now),
            )
            (holder,) = db.execute(
                "SELECT txn FROM message_id_claims WHERE message_id = ?", (message_id,)
            ).fetchone()
        return bool(holder == transaction)

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
