"""The job store: one SQLite file (WAL) shared by all milter threads, notify and the admin CLI.

Rate limits are counted from the jobs themselves, so they survive restarts and are counted once
however many threads run. Sites with several MX hosts would put a shared database behind the same
`Store` interface.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Protocol

from faxmail.store.claims import CLAIMS_SCHEMA, MessageIdClaims, SqliteMessageIdClaims

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    sender TEXT NOT NULL,            -- rate-limit key: the authenticated From, lower case
    envelope_sender TEXT NOT NULL,
    author TEXT NOT NULL,
    reply_to TEXT,
    subject TEXT NOT NULL,
    number_given TEXT NOT NULL,
    number_e164 TEXT NOT NULL,
    number_dialled TEXT NOT NULL,
    pages INTEGER NOT NULL,
    digest TEXT NOT NULL,
    message_id TEXT NOT NULL,
    proof TEXT NOT NULL,
    dkim_domain TEXT,
    language TEXT NOT NULL,
    tiff TEXT NOT NULL,
    render_seconds REAL NOT NULL,
    tiff_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_sender_created ON jobs (sender, created);
CREATE INDEX IF NOT EXISTS jobs_duplicate ON jobs (message_id, digest, number_e164);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL             -- JSON
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, at);
"""

# faxmail-notify's tables. New tables only (CREATE ... IF NOT EXISTS): a store made before them
# gets them when it is next opened, and its jobs and events stay as they are.
NOTIFY_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    round INTEGER NOT NULL,          -- 1 + fax-level retries queued before this call
    attempt INTEGER NOT NULL,        -- Asterisk's AST_OUTGOING_ATTEMPT within the round
    at REAL NOT NULL,
    outcome TEXT NOT NULL,           -- answered / unanswered / success / failed
    detail TEXT NOT NULL             -- JSON: reason, status, error, pages, rate, station...
);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts (job_id, at);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY,         -- at most one result mail per job, ever
    outcome TEXT NOT NULL,           -- sent / failed
    claimed REAL NOT NULL,
    delivered REAL                   -- NULL until the mail was handed over
);
CREATE TABLE IF NOT EXISTS inbound (
    id TEXT PRIMARY KEY,             -- received faxes, for the record
    received REAL NOT NULL,
    detail TEXT NOT NULL,            -- JSON: did, caller, status, pages, recipients...
    delivered REAL                   -- NULL until the mail was handed over
);
"""

REQUEUED_EVENT = "requeued"

# A job is "queueing" between its row and its call file; the milter's start-up repair resolves it.
COUNTED_STATES = ("queueing", "queued", "sending", "sent", "failed")


@dataclass(frozen=True)
class Job:
    id: str
    created: float
    state: str
    sender: str
    envelope_sender: str
    author: str
    reply_to: str | None
    subject: str
    number_given: str
    number_e164: str
    number_dialled: str
    pages: int
    digest: str
    message_id: str
    proof: str
    dkim_domain: str | None
    language: str
    tiff: str
    render_seconds: float
    tiff_bytes: int


_COLUMNS = [f.name for f in fields(Job)]


@dataclass(frozen=True)
class RateLimits:
    per_hour: int | None
    per_day: int | None


@dataclass(frozen=True)
class RateExceeded:
    count: int
    window: str  # "hour" / "day"


@dataclass(frozen=True)
class Duplicate:
    job_id: str


Admission = Literal["admitted"] | RateExceeded | Duplicate


class Store(MessageIdClaims, Protocol):
    def rate_exceeded(self, sender: str, limits: RateLimits, now: float) -> RateExceeded | None: ...
    def admit(self, job: Job, limits: RateLimits, duplicate_window_s: float) -> Admission: ...
    def set_state(self, job_id: str, state: str, event: str, **detail: object) -> None: ...
    def add_event(self, job_id: str, event: str, **detail: object) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def in_state(self, state: str) -> list[Job]: ...
    def events(self, job_id: str) -> list[tuple[float, str, dict[str, object]]]: ...


@dataclass(frozen=True)
class Attempt:
    round: int
    attempt: int
    at: float
    outcome: str
    detail: dict[str, object]


class SqliteStore(SqliteMessageIdClaims):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection behind a lock: libmilter starts a thread per SMTP connection, and
        # per-thread connections would leak with those threads. Only fax mail gets here.
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # a 250 promises the job is on disk
        self._conn.executescript(SCHEMA + NOTIFY_SCHEMA + CLAIMS_SCHEMA)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._conn
            db.execute("BEGIN IMMEDIATE")  # the write lock now: check-then-insert is atomic
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _exceeded(
        db: sqlite3.Connection, sender: str, limits: RateLimits, now: float
    ) -> RateExceeded | None:
        marks = ",".join("?" * len(COUNTED_STATES))
        for limit, seconds, window in (
            (limits.per_hour, 3600, "hour"),
            (limits.per_day, 86400, "day"),
        ):
            if limit is None:
                continue
            (count,) = db.execute(
                "SELECT count(*) FROM jobs"  # noqa: S608 - only our own placeholders
                f" WHERE sender = ? AND created > ? AND state IN ({marks})",
                (sender, now - seconds, *COUNTED_STATES),
            ).fetchone()
            if count >= limit:
                return RateExceeded(count, window)
        return None

    def rate_exceeded(self, sender: str, limits: RateLimits, now: float) -> RateExceeded | None:
        with self._read() as db:
            return self._exceeded(db, sender.lower(), limits, now)

    def admit(self, job: Job, limits: RateLimits, duplicate_window_s: float) -> Admission:
        """Insert `job` as "queueing" unless it is a resent duplicate or over the rate limit."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE message_id = ? AND digest = ? AND number_e164 = ?"
                " AND created > ? AND state IN ('queueing', 'queued', 'sending', 'sent', 'failed')",
                (job.message_id, job.digest, job.number_e164, job.created - duplicate_window_s),
            ).fetchone()
            if row is not None and job.message_id:
                self._event(db, row[0], "duplicate", {"message_id": job.message_id})
                return Duplicate(row[0])
            exceeded = self._exceeded(db, job.sender, limits, job.created)
            if exceeded is not None:
                return exceeded
            values = asdict(job)
            db.execute(
                f"INSERT INTO jobs ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})",  # noqa: S608
                [values[c] for c in _COLUMNS],
            )
            self._event(db, job.id, "accepted", {"proof": job.proof, "pages": job.pages})
        return "admitted"

    @staticmethod
    def _event(db: sqlite3.Connection, job_id: str, event: str, detail: dict[str, object]) -> None:
        db.execute(
            "INSERT INTO events (job_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            (job_id, time.time(), event, json.dumps(detail, ensure_ascii=False, default=str)),
        )

    def set_state(self, job_id: str, state: str, event: str, **detail: object) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, job_id))
            self._event(db, job_id, event, {"state": state, **detail})

    def add_event(self, job_id: str, event: str, **detail: object) -> None:
        with self._tx() as db:
            self._event(db, job_id, event, detail)

    def _jobs(self, where: str, args: Sequence[object]) -> list[Job]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM jobs WHERE {where} ORDER BY created DESC",  # noqa: S608
                args,
            ).fetchall()
        return [Job(*row) for row in rows]

    def get(self, job_id: str) -> Job | None:
        found = self._jobs("id = ?", (job_id,))
        return found[0] if found else None

    def in_state(self, state: str) -> list[Job]:
        return self._jobs("state = ?", (state,))

    def events(self, job_id: str) -> list[tuple[float, str, dict[str, object]]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT at, kind, detail FROM events WHERE job_id = ? ORDER BY at, rowid", (job_id,)
            ).fetchall()
        return [(at, kind, json.loads(detail)) for at, kind, detail in rows]

    # --- faxmail-notify --------------------------------------------------------------------

    def record_attempt(
        self,
        job_id: str,
        round_: int,
        attempt: int,
        outcome: str,
        state: str | None = None,
        **detail: object,
    ) -> None:
        """One call's outcome, as an attempts row and an event; `state`: the job's new state."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO attempts (job_id, round, attempt, at, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, round_, attempt, time.time(), outcome, _json(detail)),
            )
            if state is not None:
                db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, job_id))
            self._event(db, job_id, f"attempt-{outcome}", {"round": round_, **detail})

    def attempts(self, job_id: str) -> list[Attempt]:
        with self._read() as db:
            rows = db.execute(
                "SELECT round, attempt, at, outcome, detail FROM attempts WHERE job_id = ?"
                " ORDER BY at, rowid",
                (job_id,),
            ).fetchall()
        return [Attempt(r, a, at, o, json.loads(d)) for r, a, at, o, d in rows]

    @staticmethod
    def _round(db: sqlite3.Connection, job_id: str) -> int:
        (requeued,) = db.execute(
            "SELECT count(*) FROM events WHERE job_id = ? AND kind = ?", (job_id, REQUEUED_EVENT)
        ).fetchone()
        return int(requeued) + 1

    def current_round(self, job_id: str) -> int:
        """1 for the milter's call file, +1 for each fax-level retry queued since."""
        with self._read() as db:
            return self._round(db, job_id)

    def claim_requeue(self, job_id: str, after_round: int, **detail: object) -> bool:
        """Claim the fax-level retry that follows `after_round` (state back to "queued").

        False when that retry was claimed already or the job has its result: a repeated call
        must not queue a second call file.
        """
        with self._tx() as db:
            done = db.execute("SELECT 1 FROM results WHERE job_id = ?", (job_id,)).fetchone()
            if done or self._round(db, job_id) != after_round:
                return False
            db.execute("UPDATE jobs SET state = 'queued' WHERE id = ?", (job_id,))
            self._event(db, job_id, REQUEUED_EVENT, {"round": after_round + 1, **detail})
        return True

    def claim_result(
        self,
        job_id: str,
        outcome: str,
        event: str,
        *,
        only_from: tuple[str, ...] = (),
        **detail: object,
    ) -> bool:
        """Make `outcome` ("sent"/"failed"/"cancelled") the job's final state and claim its one
        result mail; with `only_from`, only while the job is in one of those states.

        False when the job's result was claimed before (a repeated or late call) or its state
        is not in `only_from`: the caller must not send anything then. Claim and state change
        are one transaction.
        """
        with self._tx() as db:
            if db.execute("SELECT 1 FROM results WHERE job_id = ?", (job_id,)).fetchone():
                self._event(db, job_id, "result-already-claimed", {"outcome": outcome, **detail})
                return False
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if only_from and (row is None or row[0] not in only_from):
                return False
            db.execute(
                "INSERT INTO results (job_id, outcome, claimed) VALUES (?, ?, ?)",
                (job_id, outcome, time.time()),
            )
            db.execute("UPDATE jobs SET state = ? WHERE id = ?", (outcome, job_id))
            self._event(db, job_id, event, {"state": outcome, **detail})
        return True

    def result_delivered(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE results SET delivered = ? WHERE job_id = ? AND delivered IS NULL",
                (time.time(), job_id),
            )
            self._event(db, job_id, "result-mailed", {})

    def pending_results(self) -> list[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT job_id FROM results WHERE delivered IS NULL ORDER BY claimed"
            ).fetchall()
        return [job_id for (job_id,) in rows]

    def add_inbound(self, inbound_id: str, **detail: object) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO inbound (id, received, detail) VALUES (?, ?, ?)",
                (inbound_id, time.time(), _json(detail)),
            )

    def inbound_delivered(self, inbound_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE inbound SET delivered = ? WHERE id = ? AND delivered IS NULL",
                (time.time(), inbound_id),
            )

    def query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows of a read-only query (storequery.py: the admin commands' questions)."""
        with self._read() as db:
            return db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
