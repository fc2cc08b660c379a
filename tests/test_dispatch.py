"""The dispatcher without Asterisk: its loop with an injected clock against a fake "Asterisk"
that consumes call files from outgoing/ and reports each call's end to notify's handlers.

What it proves: one call per number and never more calls on a line than its channels; each
call file is one attempt with its round; the next call waits for the retry decision (busy soon,
a failed fax with the policy's fallback); a send-later time and quiet hours hold a job; the
crash leftovers between stage, claim and publish are settled without a second call.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from faxmail.asterisk.callfile import parse_callfile
from faxmail.asterisk.spool import Spool, callfile_name
from faxmail.core.policy import Policy
from faxmail.core.settings import Settings
from faxmail.daemon.dispatchloop import seconds_until
from faxmail.notify.args import FaxReport
from faxmail.notify.environment import Context
from faxmail.notify.outbox import NotifySpool
from faxmail.notify.sent import on_answered, on_sent, on_unanswered
from faxmail.outbound.dispatch import Dispatcher
from faxmail.outbound.wake import listen, wake
from faxmail.store.interface import AdminStore
from faxmail.store.model import Job, JobState, RateLimits
from faxmail.store.sqlite import SqliteStore
from infra.storekinds import OpenStore

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # a Tuesday, 19:00 in Tokyo


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    root: Path
    policy: Policy
    clock: Clock = field(default_factory=Clock)
    open_store: OpenStore | None = None  # None: SQLite in the state folder

    def __post_init__(self) -> None:
        for sub in ("outgoing", "outgoing_done", "faxmail-staging", "fax"):
            (self.root / "asterisk" / sub).mkdir(parents=True, exist_ok=True)
        self.settings = Settings.model_validate(
            {
                "state_dir": str(self.root / "state"),
                "asterisk": {"spool_dir": str(self.root / "asterisk"), "user": None},
            }
        )
        self.store: AdminStore = (
            self.open_store()
            if self.open_store is not None
            else SqliteStore(self.root / "state" / "faxmail.sqlite")
        )
        self.spool = Spool.from_settings(self.settings.asterisk)
        self.dispatcher = Dispatcher(
            self.spool, self.store, lambda: self.policy, "host-a", self.clock
        )
        self.ctx = Context(self.settings, self.policy, self.store, NotifySpool(self.root / "ns"))

    def add(self, job_id: str, number: str = "+81312345678", created: float | None = None) -> Job:
        tiff = self.spool.tiff(job_id)
        tiff.write_bytes(b"II*\0")
        job = Job(
            id=job_id,
            created=T0.timestamp() if created is None else created,
            state=JobState.QUEUEING,
            sender="alice@example.jp",
            envelope_sender="alice@example.jp",
            author="alice@example.jp",
            reply_to=None,
            subject="s",
            number_given=number,
            number_e164=number,
            number_dialled="0" + number[3:],
            pages=1,
            digest=job_id,
            message_id=f"<{job_id}@example.jp>",
            proof="dkim",
            dkim_domain="example.jp",
            language="en",
            tiff=str(tiff),
            render_seconds=0.1,
            tiff_bytes=4,
        )
        assert self.store.admit(job, RateLimits(None, None), 0) == "admitted"
        self.store.queue_job(job_id, job.created)
        return job

    def calls(self) -> list[dict[str, str]]:
        """The call files in outgoing/, as {key: value} plus their Setvar:s."""
        found = []
        for path in sorted(self.spool.outgoing.glob("*.call")):
            pairs = parse_callfile(path.read_bytes())
            values: dict[str, str] = {"name": path.name}
            for key, value in pairs:
                if key == "Setvar":
                    name, _, setting = value.partition("=")
                    values[name] = setting
                else:
                    values[key] = value
            found.append(values)
        return found

    def asterisk(self, outcome: str, **fax: Any) -> list[str]:
        """The fake Asterisk: take every call file in outgoing/, archive it, report its end
        as `outcome` ("sent", "busy", "failed"); the jobs it called, in order."""
        called = []
        for call in self.calls():
            job, round_ = call["FAXMAIL_JOB"], int(call["FAXMAIL_ROUND"])
            assert call["MaxRetries"] == "0"  # one attempt: faxmail places the next
            path = self.spool.outgoing / call["name"]
            path.rename(self.spool.done / call["name"])
            if outcome == "busy":
                on_unanswered(self.ctx, job, round_, 1, "5")
            else:
                on_answered(self.ctx, job, round_, 1)
                status = "SUCCESS" if outcome == "sent" else "FAILED"
                report = FaxReport(
                    status=status,
                    error=fax.get("error", ""),
                    status_string="",
                    pages=1,
                    bitrate=14400,
                    resolution="",
                    mode="",
                    station="",
                )
                on_sent(self.ctx, job, round_, 1, report)
            called.append(job)
        return called

    def state(self, job_id: str) -> JobState:
        job = self.store.get(job_id)
        assert job is not None
        return job.state


def world(tmp_path: Path, open_store: OpenStore, **policy: Any) -> Iterator[World]:
    made = World(tmp_path, Policy.model_validate(policy), open_store=open_store)
    yield made
    made.store.close()


@pytest.fixture
def one_line(tmp_path: Path, open_store: OpenStore) -> Iterator[World]:
    yield from world(tmp_path, open_store, fax={"max_retries": 2, "retry_time": 30})


def test_one_call_per_number_first_come_first_served(one_line: World) -> None:
    w = one_line
    for n in range(4):
        w.add(f"a{n}", created=T0.timestamp() - 10 + n)
    order = []
    for _ in range(4):
        w.dispatcher.tick()
        assert len(w.calls()) == 1  # the far machine has one line: never a second call
        order += w.asterisk("sent")
    assert order == ["a0", "a1", "a2", "a3"]
    assert all(w.state(f"a{n}") == JobState.SENT for n in range(4))
    assert w.dispatcher.tick() is None and w.calls() == []


def test_a_line_carries_at_most_its_channels(tmp_path: Path, open_store: OpenStore) -> None:
    lines = [{"name": "trunk", "channel": "PJSIP/{number}@trunk", "channels": 2}]
    for w in world(tmp_path, open_store, lines=lines):
        for n in range(5):
            w.add(f"b{n}", number=f"+8131234567{n}", created=T0.timestamp() - 10 + n)
        w.dispatcher.tick()
        assert [c["FAXMAIL_JOB"] for c in w.calls()] == ["b0", "b1"]
        assert all(c["Channel"].endswith("@trunk") for c in w.calls())
        w.dispatcher.tick()  # nothing ended: nothing more starts
        assert len(w.calls()) == 2
        w.asterisk("sent")
        w.dispatcher.tick()
        assert [c["FAXMAIL_JOB"] for c in w.calls()] == ["b2", "b3"]


def test_busy_is_called_again_soon_as_a_new_call_file(one_line: World) -> None:
    w = one_line
    w.add("c0")
    w.dispatcher.tick()
    assert w.asterisk("busy") == ["c0"]
    row = w.store.dispatch_row("c0")
    assert row is not None and row.round == 2 and row.host is None
    assert w.state("c0") == JobState.QUEUED
    w.clock.now = datetime.fromtimestamp(row.not_before, UTC) - timedelta(seconds=1)
    due = w.dispatcher.tick()
    assert w.calls() == [] and due == datetime.fromtimestamp(row.not_before, UTC)
    w.clock.now = due
    w.dispatcher.tick()
    (call,) = w.calls()
    assert call["name"] == callfile_name("c0", 2) and call["FAXMAIL_ROUND"] == "2"
    w.asterisk("sent")
    assert w.state("c0") == JobState.SENT
    assert [(a.round, a.outcome) for a in w.store.attempts("c0")] == [
        (1, "unanswered"),
        (2, "answered"),
        (2, "success"),
    ]
    assert w.store.pending_results() == ["c0"]  # the one result mail, claimed once


def test_a_failed_fax_is_called_again_with_the_fallback(
    tmp_path: Path, open_store: OpenStore
) -> None:
    policy = {
        "fax": {"retry_time": 30},
        "retry": {"max_attempts": 3, "fallbacks": [{"ecm": False}, {"max_rate": 9600}]},
    }
    for w in world(tmp_path, open_store, **policy):
        w.add("d0")
        w.dispatcher.tick()
        assert "FAXMAIL_ECM" not in w.calls()[0]
        w.asterisk("failed", error="TRAINING_ERROR")
        w.clock.now = datetime.now(UTC) + timedelta(seconds=31)
        w.dispatcher.tick()
        (call,) = w.calls()
        assert call["FAXMAIL_ECM"] == "no" and call["FAXMAIL_ROUND"] == "2"
        w.asterisk("failed", error="TRAINING_ERROR")
        w.clock.now = datetime.now(UTC) + timedelta(seconds=31)
        w.dispatcher.tick()
        (call,) = w.calls()
        assert call["FAXMAIL_MAXRATE"] == "9600" and "FAXMAIL_ECM" not in call
        w.asterisk("failed", error="TRAINING_ERROR")  # the third real try: it gives up
        assert w.state("d0") == JobState.FAILED
        w.clock.now += timedelta(hours=1)
        assert w.dispatcher.tick() is None and w.calls() == []
        used = [a.detail.get("fallback") for a in w.store.attempts("d0") if a.outcome == "failed"]
        assert used == [None, {"ecm": False}, {"max_rate": 9600}]


def test_failed_fax_ends_the_job_by_default_as_before(one_line: World) -> None:
    one_line.add("e0")
    one_line.dispatcher.tick()
    one_line.asterisk("failed", error="TRAINING_ERROR")  # notify.fax_retries 0
    assert one_line.state("e0") == JobState.FAILED


def test_send_later_and_quiet_hours_hold_a_job(tmp_path: Path, open_store: OpenStore) -> None:
    quiet = [{"from": "18:00", "to": "08:00", "timezone": "Asia/Tokyo"}]
    for w in world(tmp_path, open_store, quiet_hours=quiet):
        w.add("f0")
        due = w.dispatcher.tick()  # 19:00 in Tokyo: quiet until 08:00
        assert w.calls() == [] and due == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
        w.clock.now = due
        w.dispatcher.tick()
        assert len(w.calls()) == 1


def test_send_later_time_is_the_first_calls_not_before(one_line: World) -> None:
    w = one_line
    w.add("0d0")
    w.store.queue_job("0d0", (T0 + timedelta(hours=2)).timestamp())
    assert w.dispatcher.tick() == T0 + timedelta(hours=2)
    assert w.calls() == []
    w.clock.now = T0 + timedelta(hours=2)
    w.dispatcher.tick()
    assert len(w.calls()) == 1


TRUNK: dict[str, Any] = {"line": "trunk", "channels": 3, "number": "+813123450001"}
DEFAULT_LINE: dict[str, Any] = {"line": "default", "channels": 1, "number": "+81312345678"}


def test_repair_settles_each_crash_leftover(tmp_path: Path, open_store: OpenStore) -> None:
    lines = [{"name": "trunk", "channel": "PJSIP/{number}@trunk", "channels": 3}]
    w = next(world(tmp_path, open_store, lines=lines))
    for job in ("0c0", "0c1", "0c2"):
        w.add(job, number=f"+8131234500{job[2]}")
    staged = w.spool.staged_callfile
    # 0c0: staged, never claimed (killed before the claim) → removed, the job still waits
    staged("0c0").write_text("Channel: x\n")
    # 0c1: staged and claimed (killed before the rename) → published, not placed again
    staged("0c1").write_text("Channel: x\n")
    assert w.store.claim_call("0c1", 1, "host-a", 0, **TRUNK)
    # 0c2: claimed and published (killed after the rename) → Asterisk has it: left alone
    assert w.store.claim_call("0c2", 1, "host-a", 0, **{**TRUNK, "number": "+813123450002"})
    w.spool.queued_callfile("0c2").write_text("Channel: x\n")
    w.dispatcher.repair()
    assert not staged("0c0").exists() and not staged("0c1").exists()
    assert sorted(p.name for p in w.spool.outgoing.iterdir()) == ["0c1.call", "0c2.call"]
    w.dispatcher.tick()  # 0c0 is placed now, 0c1 and 0c2 not a second time
    assert sorted(p.name for p in w.spool.outgoing.iterdir()) == [
        "0c0.call",
        "0c1.call",
        "0c2.call",
    ]


def test_a_claim_is_won_once(one_line: World) -> None:
    one_line.add("0e0")
    assert one_line.store.claim_call("0e0", 1, "host-a", 0, **DEFAULT_LINE)
    assert not one_line.store.claim_call("0e0", 1, "host-b", 0, **DEFAULT_LINE)  # another one
    one_line.dispatcher.tick()
    assert one_line.calls() == []  # placed by "host-a" already: no second call file


def test_a_lost_claim_leaves_no_call_file(one_line: World, monkeypatch: pytest.MonkeyPatch) -> None:
    one_line.add("0f0")
    monkeypatch.setattr(one_line.store, "claim_call", lambda *args, **kwargs: False)
    one_line.dispatcher.tick()
    assert one_line.calls() == [] and list(one_line.spool.staging.iterdir()) == []


def test_wake_reaches_the_dispatcher_even_on_a_long_path(tmp_path: Path) -> None:
    state = tmp_path / ("d" * 120)
    state.mkdir()
    assert not wake(state)  # nobody listens: best effort, no error
    server = listen(state, None)
    try:
        assert wake(state)
        server.settimeout(5)
        assert server.recv(64) == b"wake"
    finally:
        server.close()
    assert isinstance(server, socket.socket)


def test_the_loop_sleeps_until_due_and_never_long() -> None:
    assert seconds_until(None, T0) == 3.0
    assert seconds_until(T0 + timedelta(seconds=1), T0) == 1.0
    assert seconds_until(T0 - timedelta(seconds=1), T0) == 0.0
    assert seconds_until(T0 + timedelta(hours=1), T0) == 3.0
    assert time.time() > 0
