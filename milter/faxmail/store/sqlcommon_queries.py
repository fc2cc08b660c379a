"""The admin commands' questions to the job store (`faxmail jobs`, `show`, `stats`, ...), one
implementation for both stores over the store's reader (`sqlcommon.Db`, `?` placeholders).

Lists of ids travel in chunks of `IN (...)`, well below SQLite's limit on parameters. What the
stores answer differently stays in `sqlite_queries.py` and `postgres_queries.py`: the column
that orders rows of the same second, and how an id prefix is matched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from faxmail.store.model import Attempt, Event, EventKind, Inbound, Job, JobFilter, JobState, Result
from faxmail.store.sqlcommon import Db
from faxmail.store.sqlite_schema import (
    JOB_SELECT,
    attempt_from_row,
    event_from_row,
    job_from_row,
    marks,
)

_CHUNK = 500  # ids per IN (...)

Reader = Callable[[], AbstractContextManager[Db]]


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _like(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def job_conditions(wanted: JobFilter) -> tuple[list[str], list[object]]:
    """The WHERE conditions (joined by AND) for `wanted`, and their parameters."""
    where: list[str] = []
    args: list[object] = []
    either = []
    if wanted.states:
        either.append(f"state IN ({marks(len(wanted.states))})")
        args += wanted.states
    if wanted.duplicates:
        either.append("id IN (SELECT job_id FROM events WHERE kind = ?)")
        args.append(EventKind.DUPLICATE)
    if either:
        where.append("(" + " OR ".join(either) + ")")
    if wanted.sender:
        if wanted.sender.startswith("@"):
            where.append("sender LIKE ? ESCAPE '\\'")
            args.append("%" + _like(wanted.sender.lower()))
        else:
            where.append("sender = ?")
            args.append(wanted.sender.lower())
    if wanted.number_e164:
        where.append("number_e164 = ?")
        args.append(wanted.number_e164)
    if wanted.number_digits:
        where.append("number_dialled LIKE ? ESCAPE '\\'")
        args.append("%" + _like(wanted.number_digits) + "%")
    if wanted.since is not None:
        where.append("created >= ?")
        args.append(wanted.since)
    return where, args


class SqlQueries:
    """`JobQueries` but `ids_starting`, which each store answers in its own SQL."""

    def __init__(self, read: Reader, tie: str) -> None:
        self._read = read  # the store's connection, under its lock
        self._tie = tie  # the column that orders rows of the same second (our own name)

    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._read() as db:
            return db.execute(sql, args).fetchall()

    def jobs(self, wanted: JobFilter) -> list[Job]:
        """Jobs matching `wanted`, newest first."""
        where, args = job_conditions(wanted)
        sql = f"SELECT {JOB_SELECT} FROM jobs"  # noqa: S608 - our own column names
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY created DESC, {self._tie} DESC"
        if wanted.limit is not None:
            sql += " LIMIT ?"
            args.append(wanted.limit)
        return [job_from_row(row) for row in self._rows(sql, args)]

    def attempts(self, job_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        found: dict[str, list[Attempt]] = {job_id: [] for job_id in job_ids}
        for chunk in _chunks(job_ids):
            rows = self._rows(
                "SELECT job_id, round, attempt, at, outcome, detail FROM attempts"  # noqa: S608
                f" WHERE job_id IN ({marks(len(chunk))}) ORDER BY at, {self._tie}",
                chunk,
            )
            for job_id, *attempt in rows:
                found[job_id].append(attempt_from_row(*attempt))
        return found

    def results(self, job_ids: Sequence[str]) -> dict[str, Result]:
        found: dict[str, Result] = {}
        for chunk in _chunks(job_ids):
            rows = self._rows(
                "SELECT job_id, outcome, claimed, delivered FROM results"  # noqa: S608
                f" WHERE job_id IN ({marks(len(chunk))})",
                chunk,
            )
            for job_id, outcome, claimed, delivered in rows:
                found[job_id] = Result(JobState(outcome), claimed, delivered)
        return found

    def events(
        self, job_ids: Sequence[str], kinds: Iterable[EventKind] = ()
    ) -> dict[str, list[Event]]:
        """Events of these jobs, oldest first; only those of `kinds` when given."""
        kinds = tuple(kinds)
        found: dict[str, list[Event]] = {job_id: [] for job_id in job_ids}
        for chunk in _chunks(job_ids):
            sql = "SELECT job_id, at, kind, detail FROM events"
            sql += f" WHERE job_id IN ({marks(len(chunk))})"
            if kinds:
                sql += f" AND kind IN ({marks(len(kinds))})"
            sql += f" ORDER BY at, {self._tie}"
            for job_id, *event in self._rows(sql, (*chunk, *kinds)):
                found[job_id].append(event_from_row(*event))
        return found

    def inbound(self, since: float | None = None, limit: int | None = None) -> list[Inbound]:
        """Received faxes, newest first."""
        sql = "SELECT id, received, detail, delivered FROM inbound"
        args: list[object] = []
        if since is not None:
            sql += " WHERE received >= ?"
            args.append(since)
        sql += f" ORDER BY received DESC, {self._tie} DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [Inbound(i, r, json.loads(d), dl) for i, r, d, dl in self._rows(sql, args)]
