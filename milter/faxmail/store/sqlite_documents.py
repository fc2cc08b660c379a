"""The queued faxes' TIFFs in the job store (table `documents`), for Asterisk hosts that do not
share this host's files: their dialplan fetches a job's TIFF (`faxmail-notify fetch`) before
SendFAX. The protocol is `interface.DocumentStore`; a mixin of `SqliteStore`.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import AbstractContextManager

DOCUMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    job_id TEXT PRIMARY KEY,
    stored REAL NOT NULL,
    tiff BLOB NOT NULL               -- the fax as rendered and checked (G4 TIFF)
);
"""


class SqliteDocuments:
    """`DocumentStore` over the store's SQLite connection (mixed into SqliteStore)."""

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def put_document(self, job_id: str, tiff: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO documents (job_id, stored, tiff) VALUES (?, ?, ?)",
                (job_id, time.time(), tiff),
            )

    def document(self, job_id: str) -> bytes | None:
        with self._read() as db:
            row = db.execute("SELECT tiff FROM documents WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else bytes(row[0])
