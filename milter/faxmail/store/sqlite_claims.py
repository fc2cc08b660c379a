"""Signed Message-IDs that may be faxed in one SMTP transaction only.

A mail vouched for by a DKIM signature that leaves To:/Cc: unsigned (Microsoft 365 signs
neither) could be re-sent to any fax number by whoever holds a copy. The first transaction that
faxes such a mail claims its signed Message-ID here, in the job store, so that any later
transaction is refused, across restarts (policy `unsigned_recipients`).

The protocol is `interface.MessageIdClaims`; this is its SQLite table, and
`sqlcommon_notify.SqlMessageIdClaims` the implementation both stores share.
"""

from __future__ import annotations

CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS message_id_claims (
    message_id TEXT PRIMARY KEY,     -- the signed Message-ID, without whitespace
    txn TEXT NOT NULL,               -- the one decision (SMTP transaction) that may fax it
    claimed REAL NOT NULL
);
"""
