"""faxmail's outbound queue in the SQLite job store: the table `dispatch` and its upgrade.

The queue's rows and claims are `sqlcommon_dispatch.py`, shared with the PostgreSQL store;
SQLite's write lock (BEGIN IMMEDIATE) keeps the claims apart there.
"""

from __future__ import annotations

import sqlite3

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


def upgrade_dispatch(db: sqlite3.Connection) -> None:
    """Add the columns a store made by an older version lacks (its rows kept as they were)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(dispatch)")}
    if "line" not in columns:
        db.execute("ALTER TABLE dispatch ADD COLUMN line TEXT")
