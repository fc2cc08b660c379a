"""The table of the queued faxes' TIFFs (`documents`), for Asterisk hosts that do not share this
host's files: their dialplan fetches a job's TIFF (`faxmail-notify fetch`) before SendFAX. The
protocol is `interface.DocumentStore`, implemented in `sqlcommon_notify.SqlDocuments`.
"""

from __future__ import annotations

DOCUMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    job_id TEXT PRIMARY KEY,
    stored REAL NOT NULL,
    tiff BLOB NOT NULL               -- the fax as rendered and checked (G4 TIFF)
);
"""
