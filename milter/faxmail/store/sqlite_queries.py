"""The admin commands' questions to the SQLite job store: `sqlcommon_queries.py`'s, over the
same connection as the writers in sqlite.py, under the same lock; rows of the same second in
the order of SQLite's rowid.
"""

from __future__ import annotations

from faxmail.store.sqlcommon_queries import Reader, SqlQueries


class SqliteQueries(SqlQueries):
    def __init__(self, read: Reader) -> None:
        super().__init__(read, tie="rowid")

    def ids_starting(self, prefix: str, limit: int = 10) -> list[str]:
        """Job ids that start with `prefix` (hex only: the caller checked it)."""
        rows = self._rows(
            "SELECT id FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, prefix + "\U0010ffff", limit),
        )
        return [job_id for (job_id,) in rows]
