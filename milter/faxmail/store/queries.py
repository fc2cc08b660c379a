"""The admin commands' questions to the job store (`faxmail jobs`, `show`, `stats`, ...).

store.py holds the writers (milter, notify, cancel); this module only builds SELECTs over the
same tables and runs them through `SqliteStore.query()`, under the store's lock. Every piece
of SQL text here is our own: values always travel as `?` parameters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

from faxmail.store.sqlite import Attempt, Job, SqliteStore

_JOB_COLUMNS = ",".join(f.name for f in fields(Job))
_CHUNK = 500  # ids per IN (...): well below SQLite's limit on parameters


@dataclass(frozen=True)
class JobFilter:
    states: tuple[str, ...] = ()  # any of these; "duplicate": jobs that absorbed a resent mail
    sender: str | None = None  # "alice@example.jp" (exact) or "@example.jp" (that domain)
    number_e164: str | None = None  # exact
    number_digits: str | None = None  # a part of the dialled digits
    since: float | None = None
    limit: int | None = None  # None: all


@dataclass(frozen=True)
class Result:
    outcome: str  # sent / failed / cancelled
    claimed: float
    delivered: float | None


@dataclass(frozen=True)
class Event:
    at: float
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Inbound:
    id: str
    received: float
    detail: dict[str, Any]
    delivered: float | None


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _marks(count: int) -> str:
    return ",".join("?" * count)


class StoreQuery:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def jobs(self, wanted: JobFilter) -> list[Job]:
        """Jobs matching `wanted`, newest first."""
        where: list[str] = []
        args: list[object] = []
        states = [s for s in wanted.states if s != "duplicate"]
        either = []
        if states:
            either.append(f"state IN ({_marks(len(states))})")
            args += states
        if "duplicate" in wanted.states:
            either.append("id IN (SELECT job_id FROM events WHERE kind = 'duplicate')")
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
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"  # noqa: S608 - our own column names
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, rowid DESC"
        if wanted.limit is not None:
            sql += " LIMIT ?"
            args.append(wanted.limit)
        return [Job(*row) for row in self.store.query(sql, args)]

    def ids_starting(self, prefix: str, limit: int = 10) -> list[str]:
        """Job ids that start with `prefix` (hex only: the caller checked it)."""
        rows = self.store.query(
            "SELECT id FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, prefix + "\U0010ffff", limit),
        )
        return [job_id for (job_id,) in rows]

    def attempts(self, job_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        found: dict[str, list[Attempt]] = {job_id: [] for job_id in job_ids}
        for chunk in _chunks(job_ids):
            rows = self.store.query(
                "SELECT job_id, round, attempt, at, outcome, detail FROM attempts"  # noqa: S608
                f" WHERE job_id IN ({_marks(len(chunk))}) ORDER BY at, rowid",
                chunk,
            )
            for job_id, round_, attempt, at, outcome, detail in rows:
                found[job_id].append(Attempt(round_, attempt, at, outcome, json.loads(detail)))
        return found

    def results(self, job_ids: Sequence[str]) -> dict[str, Result]:
        found: dict[str, Result] = {}
        for chunk in _chunks(job_ids):
            rows = self.store.query(
                "SELECT job_id, outcome, claimed, delivered FROM results"  # noqa: S608
                f" WHERE job_id IN ({_marks(len(chunk))})",
                chunk,
            )
            for job_id, outcome, claimed, delivered in rows:
                found[job_id] = Result(outcome, claimed, delivered)
        return found

    def events(self, job_ids: Sequence[str], kinds: Iterable[str] = ()) -> dict[str, list[Event]]:
        """Events of these jobs, oldest first; only those of `kinds` when given."""
        kinds = tuple(kinds)
        found: dict[str, list[Event]] = {job_id: [] for job_id in job_ids}
        for chunk in _chunks(job_ids):
            sql = f"SELECT job_id, at, kind, detail FROM events WHERE job_id IN ({_marks(len(chunk))})"  # noqa: S608, E501
            if kinds:
                sql += f" AND kind IN ({_marks(len(kinds))})"
            for job_id, at, kind, detail in self.store.query(
                sql + " ORDER BY at, rowid", (*chunk, *kinds)
            ):
                found[job_id].append(Event(at, kind, json.loads(detail)))
        return found

    def inbound(self, since: float | None = None, limit: int | None = None) -> list[Inbound]:
        """Received faxes, newest first."""
        sql = "SELECT id, received, detail, delivered FROM inbound"
        args: list[object] = []
        if since is not None:
            sql += " WHERE received >= ?"
            args.append(since)
        sql += " ORDER BY received DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [Inbound(i, r, json.loads(d), dl) for i, r, d, dl in self.store.query(sql, args)]


def _like(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
