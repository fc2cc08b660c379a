"""The PostgreSQL job store's tables, created and upgraded by `faxmail store migrate` only.

The tables and columns are SQLite's (`sqlite_schema.py` and its neighbours), with a `seq`
column where SQLite orders by its implicit rowid. Times are seconds since the epoch (double
precision), detail columns JSON text, ids in the "C" collation so that prefixes sort and match
byte-wise. Each version's statements run in one transaction under an advisory lock, so two
admins migrating at once, or a crash half-way, leave one version or the other.

A store whose version is not `SCHEMA_VERSION` is refused at open (`StoreSchemaOutdated`): a
daemon never alters a shared database on its own, in the middle of other hosts' work.
"""

from __future__ import annotations

from typing import Any

import psycopg

from faxmail.store.errors import StoreSchemaOutdated

SCHEMA_VERSION = 1

# MIGRATIONS[n] brings a store from version n to n + 1.
MIGRATIONS: tuple[str, ...] = (
    """
CREATE TABLE faxmail_schema (version integer NOT NULL);
INSERT INTO faxmail_schema (version) VALUES (0);
CREATE TABLE jobs (
    seq bigserial UNIQUE,
    id text COLLATE "C" PRIMARY KEY,
    created double precision NOT NULL,
    state text NOT NULL,
    sender text NOT NULL,            -- rate-limit key: the authenticated From, lower case
    envelope_sender text NOT NULL,
    author text NOT NULL,
    reply_to text,
    subject text NOT NULL,
    number_given text NOT NULL,
    number_e164 text NOT NULL,
    number_dialled text NOT NULL,
    pages integer NOT NULL,
    digest text NOT NULL,
    message_id text NOT NULL,
    proof text NOT NULL,
    dkim_domain text,
    language text NOT NULL,
    tiff text NOT NULL,
    render_seconds double precision NOT NULL,
    tiff_bytes integer NOT NULL
);
CREATE INDEX jobs_sender_created ON jobs (sender, created);
CREATE INDEX jobs_duplicate ON jobs (message_id, digest, number_e164);
CREATE INDEX jobs_state ON jobs (state);
CREATE TABLE events (
    seq bigserial PRIMARY KEY,
    job_id text COLLATE "C" NOT NULL,
    at double precision NOT NULL,
    kind text NOT NULL,
    detail text NOT NULL
);
CREATE INDEX events_job ON events (job_id, at);
CREATE TABLE attempts (
    seq bigserial PRIMARY KEY,
    job_id text COLLATE "C" NOT NULL,
    round integer NOT NULL,
    attempt integer NOT NULL,
    at double precision NOT NULL,
    outcome text NOT NULL,
    detail text NOT NULL
);
CREATE INDEX attempts_job ON attempts (job_id, at);
CREATE TABLE results (
    job_id text COLLATE "C" PRIMARY KEY,   -- at most one result mail per job, ever
    outcome text NOT NULL,
    claimed double precision NOT NULL,
    delivered double precision
);
CREATE TABLE inbound (
    seq bigserial UNIQUE,
    id text COLLATE "C" PRIMARY KEY,
    received double precision NOT NULL,
    detail text NOT NULL,
    delivered double precision
);
CREATE TABLE message_id_claims (
    message_id text PRIMARY KEY,
    txn text NOT NULL,
    claimed double precision NOT NULL
);
CREATE TABLE dispatch (
    job_id text COLLATE "C" PRIMARY KEY,
    round integer NOT NULL,
    not_before double precision NOT NULL,
    fallback text,
    host text,                       -- NULL: waiting; else the dispatcher that placed it
    lease_until double precision,
    claimed double precision,
    line text                        -- the line the placed call went out on
);
CREATE INDEX dispatch_host ON dispatch (host);
CREATE TABLE documents (
    job_id text COLLATE "C" PRIMARY KEY,   -- the fax TIFF, for an Asterisk on another host
    stored double precision NOT NULL,
    tiff bytea NOT NULL
);
""",
)
assert len(MIGRATIONS) == SCHEMA_VERSION

Connection = psycopg.Connection[tuple[Any, ...]]


def schema_version(db: Connection) -> int | None:
    """The store's schema version; None when it has no faxmail schema at all."""
    row = db.execute("SELECT to_regclass('faxmail_schema')").fetchone()
    if row is None or row[0] is None:
        return None
    found = db.execute("SELECT max(version) FROM faxmail_schema").fetchone()
    return None if found is None or found[0] is None else int(found[0])


def check_schema(db: Connection, location: str) -> None:
    found = schema_version(db)
    if found != SCHEMA_VERSION:
        raise StoreSchemaOutdated(location, found, SCHEMA_VERSION)


def migrate(db: Connection) -> tuple[int | None, int]:
    """Bring the store to `SCHEMA_VERSION`; (the version found, the version now)."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended('faxmail-migrate', 0))")
        found = schema_version(db)
        if found is not None and found > SCHEMA_VERSION:
            raise StoreSchemaOutdated(db.info.dbname, found, SCHEMA_VERSION)
        for version in range(found or 0, SCHEMA_VERSION):
            db.execute(MIGRATIONS[version].encode())
            db.execute("UPDATE faxmail_schema SET version = %s", (version + 1,))
    return found, SCHEMA_VERSION
