"""The admin commands' questions to the PostgreSQL job store: `sqlcommon_queries.py`'s, over
the store's connection; rows of the same second in the order of the `seq` column.
"""

from __future__ import annotations

from faxmail.store.sqlcommon_queries import Reader, SqlQueries


class PostgresQueries(SqlQueries):
    def __init__(self, read: Reader) -> None:
        super().__init__(read, tie="seq")

    def ids_starting(self, prefix: str, limit: int = 10) -> list[str]:
        """Job ids that start with `prefix` (hex only: the caller checked it)."""
        rows = self._rows(
            "SELECT id FROM jobs WHERE starts_with(id, ?) ORDER BY id LIMIT ?", (prefix, limit)
        )
        return [job_id for (job_id,) in rows]
