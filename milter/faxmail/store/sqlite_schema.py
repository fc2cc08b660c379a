"""The SQLite job store's tables, and how their rows become the model's values.

States, event kinds and outcomes are stored as the enums' values (TEXT); the detail columns
are JSON. Every table is created IF NOT EXISTS, so a store made by an older version gets the
newer tables when it is next opened, its rows as they were.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from faxmail.store.model import Attempt, AttemptOutcome, Event, EventKind, Job, JobState

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

# faxmail-notify's tables, added after the first release: new tables only.
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
    outcome TEXT NOT NULL,           -- sent / failed / cancelled
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

JOB_COLUMNS = tuple(f.name for f in fields(Job))
JOB_SELECT = ",".join(JOB_COLUMNS)  # our own column names, safe to put in SQL text


def job_from_row(row: Sequence[Any]) -> Job:
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    values["state"] = JobState(values["state"])
    return Job(**values)


def attempt_from_row(round_: int, attempt: int, at: float, outcome: str, detail: str) -> Attempt:
    return Attempt(round_, attempt, at, AttemptOutcome(outcome), json.loads(detail))


def event_from_row(at: float, kind: str, detail: str) -> Event:
    return Event(at, EventKind(kind), json.loads(detail))


def marks(count: int) -> str:
    """`count` placeholders for an IN (...) list."""
    return ",".join("?" * count)


def to_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
