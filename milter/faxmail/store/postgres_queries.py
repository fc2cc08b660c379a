"""The admin commands' questions to the PostgreSQL job store (`faxmail jobs`, `show`, `stats`).

`JobQueries` as `sqlite_queries.py` answers them, over the store's connection; the job filter's
conditions are SQLite's own (`job_conditions`), with PostgreSQL's placeholders. Lists of ids
travel as one array parameter (`= ANY(%s)`), so there is no limit to chunk around.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from faxmail.store.model import Attempt, Event, EventKind, Inbound, Job, JobFilter, JobState, Result
from faxmail.store.postgres_schema import Connection
from faxmail.store.sqlite_queries import job_conditions
from faxmail.store.sqlite_schema import JOB_SELECT, attempt_from_row, event_from_row, job_from_row

Reader = Callable[[], AbstractContextManager[Connection]]


def _placeholders(condition: str) -> str:
    """A condition of `job_conditions` (only our own text, `?` only as placeholders)."""
    return condition.replace("?", "%s")


class PostgresQueries:
    def __init__(self, read: Reader) -> None:
        self._read = read

    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._read() as db:
            return db.execute(sql.encode(), args).fetchall()

    def jobs(self, wanted: JobFilter) -> list[Job]:
        where, args = job_conditions(wanted)
        sql = f"SELECT {JOB_SELECT} FROM jobs"  # noqa: S608 - our own column names
        if where:
            sql += " WHERE " + " AND ".join(_placeholders(c) for c in where)
        sql += " ORDER BY created DESC, seq DESC"
        if wanted.limit is not None:
            sql += " LIMIT %s"
            args.append(wanted.limit)
        return [job_from_row(row) for row in self._rows(sql, args)]

    def ids_starting(self, prefix: str, limit: int = 10) -> list[str]:
        """Job ids that start with `prefix` (hex only: the caller checked it)."""
        rows = self._rows(
            "SELECT id FROM jobs WHERE starts_with(id, %s) ORDER BY id LIMIT %s", (prefix, limit)
        )
        return [job_id for (job_id,) in rows]

    def attempts(self, job_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        found: dict[str, list[Attempt]] = {job_id: [] for job_id in job_ids}
        rows = self._rows(
            "SELECT job_id, round, attempt, at, outcome, detail FROM attempts"
            " WHERE job_id = ANY(%s) ORDER BY at, seq",
            (list(job_ids),),
        )
        for job_id, *attempt in rows:
            found[job_id].append(attempt_from_row(*attempt))
        return found

    def results(self, job_ids: Sequence[str]) -> dict[str, Result]:
        rows = self._rows(
            "SELECT job_id, outcome, claimed, delivered FROM results WHERE job_id = ANY(%s)",
            (list(job_ids),),
        )
        return {
            job_id: Result(JobState(outcome), claimed, delivered)
            for job_id, outcome, claimed, delivered in rows
        }

    def events(
        self, job_ids: Sequence[str], kinds: Iterable[EventKind] = ()
    ) -> dict[str, list[Event]]:
        kinds = tuple(kinds)
        found: dict[str, list[Event]] = {job_id: [] for job_id in job_ids}
        sql = "SELECT job_id, at, kind, detail FROM events WHERE job_id = ANY(%s)"
        args: list[object] = [list(job_ids)]
        if kinds:
            sql += " AND kind = ANY(%s)"
            args.append([str(kind) for kind in kinds])
        for job_id, *event in self._rows(sql + " ORDER BY at, seq", args):
            found[job_id].append(event_from_row(*event))
        return found

    def inbound(self, since: float | None = None, limit: int | None = None) -> list[Inbound]:
        sql = "SELECT id, received, detail, delivered FROM inbound"
        args: list[object] = []
        if since is not None:
            sql += " WHERE received >= %s"
            args.append(since)
        sql += " ORDER BY received DESC, seq DESC"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(limit)
        return [Inbound(i, r, json.loads(d), dl) for i, r, d, dl in self._rows(sql, args)]
