"""Several hosts on one job store: admission, claims and leases with concurrent writers, and the
PostgreSQL store's faults (server down and back, a schema that needs `faxmail store migrate`).

"Hosts" here are separate store connections in separate processes or threads, each as a milter
or a dispatcher of its own host would hold it; the through-Postfix version with two real
milters is tests/test_postgres_mx.py. The claim tests run against both store kinds: SQLite
keeps the same contract on one host.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from faxmail.admin.main import main as admin_main
from faxmail.asterisk.spool import Spool
from faxmail.core.exitcodes import EX_TEMPFAIL
from faxmail.core.policy import Fax, Policy
from faxmail.core.replies import LOCAL_ERROR, Refusal
from faxmail.core.settings import Asterisk, Settings
from faxmail.core.yamlfile import ConfigError, load_yaml
from faxmail.notify.environment import Context
from faxmail.notify.heldevents import held
from faxmail.notify.main import main as notify_main
from faxmail.notify.outbox import NotifySpool
from faxmail.notify.sweep import settle_stale_admissions
from faxmail.outbound.enqueue import STALE_QUEUEING_S, Enqueuer
from faxmail.store.choose import open_store
from faxmail.store.errors import StoreSchemaOutdated, StoreUnavailable
from faxmail.store.interface import AdminStore
from faxmail.store.model import (
    AttemptOutcome,
    Duplicate,
    EventKind,
    JobFilter,
    JobState,
    RateLimits,
)
from faxmail.store.postgres import PostgresStore
from infra.postgres import PostgresServer, start_postgres
from infra.storekinds import OpenStore, migrated_database
from test_store import job

NONE = RateLimits(None, None)
_ALL = JobFilter()


# --- admission: two processes, one database -----------------------------------------------


def _admit_in_process(url: str, first: int, count: int, barrier: Any, out: Any) -> None:
    store = PostgresStore(url)  # this process's own connection, as another host's milter
    limits = RateLimits(per_hour=5, per_day=None)
    barrier.wait()
    answers = []
    for n in range(first, first + count):
        answers.append(str(store.admit(job(n), limits, 3600)))
        # the same mail, delivered through this host too: one job for both
        copy = job(1000 + first, message_id="<resent@x>", digest="resent", sender="bob@x")
        answers.append("copy:" + str(type(store.admit(copy, NONE, 3600)).__name__))
    store.close()
    out.put(answers)


def test_two_processes_admitting_at_once_hold_the_rate_limit_and_duplicates(
    pg_server: PostgresServer,
) -> None:
    url = migrated_database(pg_server)
    fork = multiprocessing.get_context("fork")
    barrier, out = fork.Barrier(2), fork.Queue()
    workers = [
        fork.Process(target=_admit_in_process, args=(url, first, 10, barrier, out))
        for first in (0, 100)
    ]
    for worker in workers:
        worker.start()
    answers = [*out.get(timeout=120), *out.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert answers.count("admitted") == 5  # per_hour 5, whoever admitted first
    store = PostgresStore(url)
    try:
        copies = [j for j in store.queries.jobs(_ALL) if j.digest == "resent"]
        assert len(copies) == 1  # twenty deliveries of one mail on two hosts: one job
    finally:
        store.close()


# --- dispatch: claims from two hosts at once ----------------------------------------------


def _queued(store: AdminStore, count: int) -> list[tuple[str, str]]:
    """`count` queued jobs, every third to one shared number; (job id, number)."""
    made = []
    for n in range(count):
        number = "+81300000000" if n % 3 == 0 else f"+8131000{n:04d}"
        fax = job(n, number_e164=number, created=time.time() + n)
        assert store.admit(fax, NONE, 0) == "admitted"
        store.queue_job(fax.id, 0.0)
        made.append((fax.id, number))
    return made


def test_two_dispatchers_never_exceed_a_lines_channels_nor_call_a_number_twice(
    open_store: OpenStore,
) -> None:
    first, second = open_store(), open_store()  # two hosts' connections
    jobs = _queued(first, 12)
    won: dict[str, list[str]] = {"host-a": [], "host-b": []}
    start = threading.Barrier(2)

    def dispatcher(store: AdminStore, host: str) -> None:
        start.wait()
        for _ in range(3):  # each host plans from a stale view: every waiting job, every time
            for job_id, number in jobs:
                lease = time.time() + 3600
                line = {"number": number, "line": "trunk", "channels": 2}
                if store.claim_call(job_id, 1, host, lease, **line):
                    won[host].append(job_id)

    threads = [
        threading.Thread(target=dispatcher, args=(first, "host-a")),
        threading.Thread(target=dispatcher, args=(second, "host-b")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    claimed = won["host-a"] + won["host-b"]
    assert len(claimed) == 2, won  # the line's two channels, over both hosts
    assert len(set(claimed)) == 2  # no round claimed twice
    numbers = [number for job_id, number in jobs if job_id in claimed]
    assert len(set(numbers)) == 2  # and never two calls to one number
    placed = first.dispatch_rows(claimed=True)
    assert sorted(row.job_id for row in placed) == sorted(claimed)


def test_the_channel_frees_when_a_call_ends_on_the_other_host(open_store: OpenStore) -> None:
    a, b = open_store(), open_store()
    ((j1, n1), (j2, n2)) = _queued(a, 2)
    one = {"line": "trunk", "channels": 1}
    assert a.claim_call(j1, 1, "host-a", time.time() + 3600, number=n1, **one)
    assert not b.claim_call(j2, 1, "host-b", time.time() + 3600, number=n2, **one)
    assert a.claim_result(j1, JobState.SENT, EventKind.FAX_SENT)  # host-a's notify
    assert b.claim_call(j2, 1, "host-b", time.time() + 3600, number=n2, **one)


def test_an_expired_lease_fails_the_job_once_and_it_is_never_dialled_again(
    open_store: OpenStore,
) -> None:
    a, b = open_store(), open_store()
    ((j1, n1), (j2, n2)) = _queued(a, 2)
    one = {"line": "trunk", "channels": 1}
    assert a.claim_call(j1, 1, "host-a", time.time() - 1, number=n1, **one)  # host-a died
    assert not b.claim_call(j2, 1, "host-b", time.time() + 3600, number=n2, **one)
    assert b.expire_claims(time.time()) == [j1]
    assert a.expire_claims(time.time()) == []  # settled once, whoever looks
    gone = b.get(j1)
    assert gone is not None and gone.state == JobState.FAILED
    assert j1 in b.pending_results()  # its one result mail: "outcome unknown"
    assert [k for _, k, _ in b.events(j1)][-1] == EventKind.LEASE_EXPIRED
    assert not b.claim_call(j1, 1, "host-b", time.time() + 3600, number=n1, **one)
    assert not b.claim_requeue(j1, 1)  # a late report of that call queues nothing
    assert not b.claim_result(j1, JobState.SENT, EventKind.FAX_SENT)  # nor a second mail
    assert b.claim_call(j2, 1, "host-b", time.time() + 3600, number=n2, **one)  # line free


# --- PostgreSQL down and back; the schema ---------------------------------------------------


@pytest.fixture
def own_server() -> Any:
    """A server of this test's own, to stop and start without disturbing the others."""
    server = start_postgres(fsync=False)
    yield server
    server.close()


def test_postgres_down_refuses_with_451_and_the_same_store_recovers(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    store = PostgresStore(migrated_database(own_server))
    spool = Spool.from_settings(Asterisk(spool_dir=tmp_path, user=None))
    for folder in (spool.outgoing, spool.staging, spool.faxes):
        folder.mkdir()
    rendered = tmp_path / "rendered.tif"
    rendered.write_bytes(b"II*\0")
    enqueuer = Enqueuer(spool, store)
    own_server.stop()
    with pytest.raises(StoreUnavailable):
        store.rate_exceeded("alice@example.jp", RateLimits(10, None), time.time())
    with pytest.raises(Refusal) as refused:
        enqueuer.enqueue(job(1, id="1" * 16), rendered, fax=Fax(), limits=NONE)
    assert refused.value.reply == LOCAL_ERROR and str(refused.value.reply).startswith("451 4.3.0")
    own_server.start()
    assert enqueuer.enqueue(job(2, id="2" * 16), rendered, fax=Fax(), limits=NONE) == "2" * 16
    queued = store.get("2" * 16)
    assert queued is not None and queued.state == JobState.QUEUED
    assert store.get("1" * 16) is None  # refused before its row: nothing to settle
    store.close()


def test_a_store_without_its_schema_names_the_migrate_command(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    url = pg_server.create_database()
    with pytest.raises(StoreSchemaOutdated, match="faxmail store migrate"):
        PostgresStore(url)
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"state_dir: {tmp_path / 'state'}\nstore: {{url: '{url}'}}\n")
    assert admin_main(["store", "migrate", "--settings", str(settings)]) == 0
    assert admin_main(["store", "migrate", "--settings", str(settings)]) == 0  # nothing to do
    store = open_store(load_yaml(settings, Settings))
    assert isinstance(store, PostgresStore)
    store.close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE faxmail_schema SET version = 0")
    with pytest.raises(StoreSchemaOutdated, match="schema version 0"):
        PostgresStore(url)


def test_a_bad_store_url_names_the_key(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("store: {url: 'mysql://db/faxmail'}\n")
    with pytest.raises(ConfigError) as bad:
        load_yaml(settings, Settings)
    assert "store.url" in str(bad.value)


def test_sqlite_stays_the_default(tmp_path: Path) -> None:
    settings = Settings.model_validate({"state_dir": str(tmp_path)})
    store = open_store(settings)
    try:
        assert store.location == str(tmp_path / "faxmail.sqlite")
        assert store.admit(job(1), NONE, 0) == "admitted"
        assert isinstance(store.admit(job(2, message_id="<m1@x>"), NONE, 3600), Duplicate)
    finally:
        store.close()


def test_a_call_report_while_postgres_is_down_is_held_and_recorded_by_retry(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    url = migrated_database(own_server)
    store = PostgresStore(url)
    tiff = tmp_path / "0123456789abcdef.tif"
    tiff.write_bytes(b"II*\0")  # the next call needs its fax file
    fax = job(1, id="0123456789abcdef", tiff=str(tiff))
    assert store.admit(fax, NONE, 0) == "admitted"
    store.queue_job(fax.id, 0.0)
    line = {"number": fax.number_e164, "line": "default", "channels": 1}
    assert store.claim_call(fax.id, 1, "host-a", time.time() + 3600, **line)
    (tmp_path / "asterisk" / "outgoing").mkdir(parents=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text("fax: {max_retries: 2, retry_time: 30}\n")
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "policy": str(policy),
                "asterisk": {"spool_dir": str(tmp_path / "asterisk"), "user": None},
                "notify": {"log_file": str(tmp_path / "notify.log")},
                "store": {"url": url},
            }
        )
    )
    spool = tmp_path / "state" / "notify-spool"
    busy = ["--settings", str(settings), "unanswered", "--job", fax.id, "--round", "1"]
    busy += ["--attempt", "1", "--reason", "5"]
    own_server.stop()
    try:
        assert notify_main(busy) == EX_TEMPFAIL  # Asterisk's report: kept, not lost
        assert len(held(spool)) == 1
        assert notify_main(["--settings", str(settings), "retry"]) == EX_TEMPFAIL  # still down
        assert len(held(spool)) == 1
    finally:
        own_server.start()
    notify_main(["--settings", str(settings), "retry"])  # the systemd timer, later
    assert held(spool) == []
    (attempt,) = store.attempts(fax.id)
    assert attempt.outcome == AttemptOutcome.UNANSWERED
    assert store.current_round(fax.id) == 2  # busy: the next call waits in the queue
    assert "held in" in (tmp_path / "notify.log").read_text()
    store.close()


def test_a_hosts_start_up_repair_leaves_another_hosts_admission_alone(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    url = migrated_database(pg_server)
    host_a, host_b = PostgresStore(url), PostgresStore(url)
    in_progress = job(1, id="a" * 16)  # host A between its row and "queued"
    crashed = job(2, id="b" * 16, created=time.time() - 2 * STALE_QUEUEING_S)  # a dead host's
    for fax in (in_progress, crashed):
        assert host_a.admit(fax, NONE, 0) == "admitted"
    spool = Spool.from_settings(Asterisk(spool_dir=tmp_path, user=None))
    Enqueuer(spool, host_b).repair(shared=True)  # host B restarts
    assert [j.id for j in host_b.in_state(JobState.QUEUEING)] == ["a" * 16]
    assert [j.id for j in host_b.in_state(JobState.ABANDONED)] == ["b" * 16]
    settings = Settings.model_validate({"state_dir": str(tmp_path), "store": {"url": url}})
    ctx = Context(settings, Policy(), host_b, NotifySpool(tmp_path / "ns"))
    later = time.time() + 2 * STALE_QUEUEING_S  # host A died after all: its row is settled
    assert settle_stale_admissions(ctx, later) == 1
    assert host_b.in_state(JobState.QUEUEING) == []
    host_a.close()
    host_b.close()


def test_the_admin_commands_read_the_shared_store(
    pg_server: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = migrated_database(pg_server)
    store = PostgresStore(url)  # as host A's milter left it
    assert store.admit(job(1, id="c" * 16), NONE, 0) == "admitted"
    store.queue_job("c" * 16, 0.0)
    store.close()
    settings = tmp_path / "settings.yaml"  # host B's settings: the same store.url
    settings.write_text(
        yaml.safe_dump(
            {"state_dir": str(tmp_path), "asterisk": {"user": None}, "store": {"url": url}}
        )
    )
    assert admin_main(["jobs", "--settings", str(settings), "--json"]) == 0
    assert "c" * 16 in capsys.readouterr().out
    assert admin_main(["show", "cccc", "--settings", str(settings)]) == 0
    assert "queued" in capsys.readouterr().out
    assert admin_main(["stats", "--settings", str(settings)]) == 0


def test_the_fax_document_is_kept_for_a_remote_asterisk_until_the_result(
    pg_server: PostgresServer,
) -> None:
    store = PostgresStore(migrated_database(pg_server))
    try:
        assert store.admit(job(1, id="d" * 16), NONE, 0) == "admitted"
        assert store.document("d" * 16) is None
        store.put_document("d" * 16, b"II*\0first")
        store.put_document("d" * 16, b"II*\0\xff\x00 again")  # a resend's: replaced
        assert store.document("d" * 16) == b"II*\0\xff\x00 again"
        store.queue_job("d" * 16, 0.0)
        assert store.claim_result("d" * 16, JobState.SENT, EventKind.FAX_SENT)
        assert store.document("d" * 16) is None  # dropped with the job's result
    finally:
        store.close()
