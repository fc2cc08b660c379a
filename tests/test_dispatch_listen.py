"""Other hosts wake this host's dispatcher through the PostgreSQL store (LISTEN/NOTIFY).

A write after which a call may start (a job queued, a call over, a claim given back or expired)
announces it on commit; each dispatcher's listener (a connection of its own) hears it from any
host's milter or notify. "Another host" here is a second store object (its own connection) or
a forked process. SQLite has no listener: one host, whose wake socket hears everything.

No test asserts how fast a wake arrives: each waits up to WAIT_S for what must happen. The
dispatcher threads run with a poll of an hour, so only a wake can make them tick.
"""

from __future__ import annotations

import logging
import multiprocessing
import select
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from faxmail.core.policy import Policy
from faxmail.daemon.dispatchloop import DispatchThread
from faxmail.store.interface import AdminStore, DispatchListener
from faxmail.store.model import EventKind, JobState, RateLimits
from faxmail.store.postgres import PostgresStore
from infra.postgres import PostgresServer, start_postgres
from infra.storekinds import OpenStore, migrated_database
from test_dispatch import T0, World
from test_store import job

WAIT_S = 10.0
HOUR_S = 3600.0
NONE = RateLimits(None, None)
LINES = [{"name": "trunk", "channel": "PJSIP/{number}@trunk", "channels": 4}]
HEARD_NOTHING = "no wakes from other hosts"


def readable(listener: DispatchListener, wait_s: float = WAIT_S) -> bool:
    ready, _, _ = select.select([listener], [], [], wait_s)
    return bool(ready)


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.02)


def _queue_in_process(url: str, job_id: str) -> None:
    store = PostgresStore(url)  # another host's milter: its own process and connection
    assert store.admit(job(1, id=job_id), NONE, 0) == "admitted"
    store.queue_job(job_id, 0.0)
    store.close()


# --- the store: announce and listen ---------------------------------------------------------


def test_a_job_queued_by_another_process_makes_the_listener_readable(
    pg_server: PostgresServer,
) -> None:
    url = migrated_database(pg_server)
    store = PostgresStore(url)
    listener = store.dispatch_listener()
    try:
        assert not readable(listener, 0) and listener.drain() == 0
        other = multiprocessing.get_context("fork").Process(
            target=_queue_in_process, args=(url, "0123456789abcdef")
        )
        other.start()
        other.join(timeout=60)
        assert other.exitcode == 0
        assert readable(listener)
        assert listener.drain() >= 1
        assert not readable(listener, 0)  # drained: the next select waits again
    finally:
        listener.close()
        store.close()


def test_each_write_that_may_start_a_call_announces_it_on_commit(
    pg_server: PostgresServer,
) -> None:
    url = migrated_database(pg_server)
    here, there = PostgresStore(url), PostgresStore(url)
    listener = here.dispatch_listener()

    def claim(job_id: str, lease_until: float) -> bool:
        return there.claim_call(
            job_id, 1, "host-b", lease_until, number="+81312345678", line="trunk", channels=4
        )

    def heard(what: str) -> None:
        assert readable(listener), what
        assert listener.drain() >= 1, what

    try:
        with there._tx() as db:  # the hook itself: heard only once committed
            there._announce(db)
            assert not readable(listener, 0.2)
        heard("commit")
        assert there.admit(job(1), NONE, 0) == "admitted"
        assert not readable(listener, 0.2)  # admission alone starts no call
        there.queue_job("j1", 0.0)
        heard("queue_job")
        assert claim("j1", time.time() + HOUR_S)
        there.release_call("j1", 1)
        heard("release_call")
        assert claim("j1", time.time() - 1)
        assert there.expire_claims(time.time()) == ["j1"]
        heard("expire_claims")
        assert there.admit(job(2), NONE, 0) == "admitted"
        there.queue_job("j2", 0.0)
        listener.drain()
        assert claim("j2", time.time() + HOUR_S)
        assert there.claim_requeue("j2", 1, not_before=0.0)
        heard("claim_requeue")
        assert there.claim_result("j2", JobState.SENT, EventKind.FAX_SENT)
        heard("claim_result")
    finally:
        listener.close()
        here.close()
        there.close()


def test_sqlite_has_no_listener(tmp_path: Path) -> None:
    from faxmail.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "faxmail.sqlite")
    try:
        assert store.dispatch_listener() is None
    finally:
        store.close()


# --- the dispatcher thread ------------------------------------------------------------------


def _open(url: str) -> OpenStore:
    return lambda: PostgresStore(url)


class Ticks:
    """Counts the dispatcher's finished ticks; `after_each` runs at the end of each (before
    the thread reads its poll_s for the sleep that follows)."""

    def __init__(self, w: World, after_each: Callable[[], None] = lambda: None) -> None:
        self.finished = 0
        tick = w.dispatcher.tick

        def counted(only: str | None = None) -> datetime | None:
            try:
                return tick(only)
            finally:
                after_each()
                self.finished += 1

        w.dispatcher.tick = counted  # type: ignore[method-assign]


@pytest.fixture
def two_worlds(tmp_path: Path) -> Iterator[Callable[[str], tuple[World, World]]]:
    """This host's world (its dispatcher) and another host's, on one PostgreSQL store."""
    made: list[World] = []

    def make(url: str) -> tuple[World, World]:
        policy = Policy.model_validate({"lines": LINES})
        here = World(tmp_path / "a", policy, open_store=_open(url))
        there = World(tmp_path / "b", policy, clock=here.clock, open_store=_open(url))
        made.extend((here, there))
        return here, there

    yield make
    for w in made:
        w.store.close()


def _placed(store: AdminStore, job_id: str) -> Callable[[], bool]:
    def placed() -> bool:
        row = store.dispatch_row(job_id)
        return row is not None and row.host == "host-a"

    return placed


def test_a_job_another_host_queued_wakes_the_dispatcher(
    pg_server: PostgresServer, two_worlds: Callable[[str], tuple[World, World]]
) -> None:
    here, there = two_worlds(migrated_database(pg_server))
    ticks = Ticks(here)
    here.add("d0", number="+81312345670", created=T0.timestamp() - 10)
    dispatch = DispatchThread(here.dispatcher, here.settings.state_dir, poll_s=HOUR_S)
    dispatch.start()
    try:
        until(lambda: ticks.finished >= 1, "the first tick (an hour's sleep follows)")
        assert _placed(here.store, "d0")()
        there.add("d1", number="+81312345671", created=T0.timestamp() - 5)  # no local poke
        until(_placed(here.store, "d1"), "the other host's job wakes this dispatcher")
        assert [c["FAXMAIL_JOB"] for c in here.calls()] == ["d0", "d1"]
    finally:
        dispatch.stop()


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server of this test's own, to stop and start without disturbing the others."""
    server = start_postgres(fsync=False)
    yield server
    server.close()


def test_postgres_restarted_the_dispatcher_warns_once_and_hears_again(
    own_server: PostgresServer,
    two_worlds: Callable[[str], tuple[World, World]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    here, there = two_worlds(migrated_database(own_server))
    dispatch = DispatchThread(here.dispatcher, here.settings.state_dir, poll_s=0.2)
    since_back = []

    def after_each() -> None:  # once the listener is back: only a wake makes the next tick
        if "hearing other hosts' wakes again" in caplog.text:
            dispatch.poll_s = HOUR_S
            since_back.append(1)

    ticks = Ticks(here, after_each)
    with caplog.at_level(logging.INFO, logger="faxmail.dispatch"):
        dispatch.start()
        try:
            until(lambda: ticks.finished >= 1, "a first tick")
            own_server.stop()
            down = ticks.finished
            until(lambda: ticks.finished >= down + 3, "the poll ticks on while the server is down")
            own_server.start()
            until(lambda: bool(since_back), "the listener back, and a tick after it")
            there.add("r0", created=T0.timestamp() - 10)
            until(_placed(here.store, "r0"), "the other host's job wakes this dispatcher")
            assert dispatch._thread.is_alive()  # it ran on through the outage
        finally:
            dispatch.stop()
    warned = [r for r in caplog.records if HEARD_NOTHING in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "\n" not in warned[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
