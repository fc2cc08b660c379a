"""9. The job store: admissions per second, PostgreSQL against SQLite, in the same run.

An admission is what the milter asks of the store before its 250: `admit` (the duplicate
check, the sender's rate limit counted from the jobs, the job row and its event, in one
transaction) and then `queue_job` (state "queued" and the queue row, a second transaction).
Both stores as the daemon runs them, durably: SQLite in WAL with synchronous=FULL in a fresh
file, PostgreSQL with fsync on, on a private server on loopback (tests/infra/postgres.py), a
fresh migrated database per run. Variants, interleaved round by round:

- sqlite: one milter (one connection; SQLite has one writer at a time anyway);
- postgres: one milter (one connection);
- postgres ×4: four milters at once (four connections in four threads: several MX hosts), the
  same total of admissions spread over them, senders shared so the advisory locks contend.

Ten senders take turns, with a rate limit high enough never to refuse (it is still counted).
The ratios: each PostgreSQL variant's admissions per second over SQLite's in the same round.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from faxmail.store.interface import JobStore
from faxmail.store.model import Job, JobState, RateLimits
from faxmail.store.postgres import PostgresStore
from faxmail.store.postgres_schema import migrate
from faxmail.store.sqlite import SqliteStore
from infra.postgres import PostgresServer, start_postgres

from .common import Row, Section, interleaved, ratio_row
from .config import Config

LIMITS = RateLimits(per_hour=1_000_000, per_day=None)
SENDERS = [f"sender{n}@example.jp" for n in range(10)]
BASE = Job(
    id="",
    created=0.0,
    state=JobState.QUEUEING,
    sender="",
    envelope_sender="a@example.jp",
    author="",
    reply_to=None,
    subject="bench",
    number_given="03-1234-5678",
    number_e164="+81312345678",
    number_dialled="0312345678",
    pages=1,
    digest="",
    message_id="",
    proof="dkim",
    dkim_domain="example.jp",
    language="en",
    tiff="/nonexistent.tif",
    render_seconds=0.1,
    tiff_bytes=100,
)


def _admit_all(store: JobStore, prefix: str, count: int) -> None:
    for n in range(count):
        sender = SENDERS[n % len(SENDERS)]
        job_id = f"{prefix}{n:08x}"
        job = dataclasses.replace(
            BASE,
            id=job_id,
            created=time.time(),
            sender=sender,
            author=sender,
            digest=job_id,
            message_id=f"<{job_id}@example.jp>",
        )
        if store.admit(job, LIMITS, 3600) != "admitted":
            raise RuntimeError(f"{job_id} was not admitted")
        store.queue_job(job_id, job.created)


def _postgres_url(server: PostgresServer) -> str:
    url = server.create_database()
    with psycopg.connect(url, autocommit=True) as db:
        migrate(db)
    return url


def _per_second(stores: list[JobStore], total: int) -> float:
    """Admissions per second of `total` admissions spread over `stores`, one thread each."""
    each = total // len(stores)
    threads = [
        threading.Thread(target=_admit_all, args=(store, f"{k:02x}", each))
        for k, store in enumerate(stores)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return each * len(stores) / (time.perf_counter() - started)


def run(cfg: Config) -> Section:
    total = cfg.store_admissions
    section = Section("store", f"9. The job store: {total} admissions, PostgreSQL vs SQLite")
    rates: dict[str, list[float]] = {"sqlite": [], "postgres": [], "postgres ×4": []}
    server = start_postgres(fsync=True)
    work = Path(tempfile.mkdtemp(prefix="fxb-store-"))
    try:

        def one(variant: str, round_: int) -> None:
            stores: list[JobStore]
            if variant == "sqlite":
                stores = [SqliteStore(work / f"r{round_}.sqlite")]
            else:
                url = _postgres_url(server)
                stores = [PostgresStore(url) for _ in range(4 if variant.endswith("4") else 1)]
            try:
                rates[variant].append(_per_second(stores, total))
            finally:
                for store in stores:
                    store.close()

        interleaved(cfg.store_rounds, list(rates), one)
    finally:
        server.close()
    rows = {v: section.add(Row(f"{v}: admissions per second", "/s", r)) for v, r in rates.items()}
    for variant in ("postgres", "postgres ×4"):
        section.add(ratio_row(f"{variant} / sqlite", rows[variant], rows["sqlite"]))
    section.notes += [
        f"{total} admissions per run (admit + queue_job: two durable transactions), "
        f"{cfg.store_rounds} rounds; ten senders in turn, their rate limit counted but never "
        "reached; a fresh SQLite file / PostgreSQL database per run.",
        "PostgreSQL 15 on loopback with fsync on and its defaults otherwise (shared_buffers "
        "32 MB); SQLite WAL, synchronous=FULL. No goal: the figure says what a second "
        "database server costs per fax compared with the embedded file.",
    ]
    return section
