"""`faxmail cancel`'s core: taking a call file back from Asterisk's spool, racing pbx_spool.

`PbxSpool` does what pbx_spool.c does to a call file, in the same order and by the same means
(open by path, read, close; append `StartRetry` by path with fopen "a" semantics, which create
the file again if it is gone; utime; dial; at the end of the attempt `EndRetry` or the move to
outgoing_done/). It is adversarial: it reads whenever the test says, not only when its
schedule says, which is worse than Asterisk ever does (Asterisk keeps to the times the file
shows, except when it starts up). The invariant: the call file is either cancelled (parked,
never read by "Asterisk") or dialled (read whole, and left whole in outgoing/) — never half.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from faxmail.asterisk.callfile import CallFile, parse_callfile, render_callfile
from faxmail.asterisk.spool import PARKING, callfile_name
from faxmail.asterisk.spool import Spool as AsteriskSpool
from faxmail.asterisk.takeback import Busy, CallState, locate, withdraw

NAME = "0123456789abcdef.call"
BODY = render_callfile(
    CallFile(
        channel="PJSIP/0312345678@trunk",
        context="faxmail-send",
        extension="send",
        max_retries=2,
        retry_time=300,
        wait_time=45,
        variables={"FAXMAIL_JOB": "0123456789abcdef", "FAXFILE": "/var/spool/fax/x.tif"},
    )
)


@dataclass
class Spool:
    outgoing: Path
    parking: Path
    done: Path

    @property
    def path(self) -> Path:
        return self.outgoing / NAME


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    outgoing, staging, done = tmp_path / "outgoing", tmp_path / "staging", tmp_path / "done"
    for folder in (outgoing, staging, done):
        folder.mkdir()
    return Spool(outgoing, staging / PARKING, done)


def queue(spool: Spool, extra: bytes = b"", mtime: float | None = None) -> bytes:
    """Put a whole call file into outgoing/ as the milter does (write elsewhere, rename)."""
    data = BODY + extra
    staged = spool.outgoing.parent / "staging" / NAME
    staged.write_bytes(data)
    when = time.time() + 3600 if mtime is None else mtime
    os.utime(staged, (when, when))
    os.rename(staged, spool.path)
    return data


@dataclass(frozen=True)
class PbxView:
    """What pbx_spool's apply_outgoing() makes of a file."""

    complete: bool  # Channel, Context, Extension and our Setvar lines all there
    callingpid: int
    retries: int


def pbx_view(data: bytes) -> PbxView:
    pid, retries = 0, 0
    keys = set()
    for key, value in parse_callfile(data):
        keys.add(key.lower())
        if key.lower() == "startretry":
            pid = int(value.split()[0])
        elif key.lower() in ("endretry", "abortretry"):
            pid, retries = 0, retries + 1
        elif key.lower() == "retry":
            retries += 1
    setvars = {v.split("=", 1)[0] for k, v in parse_callfile(data) if k == "Setvar"}
    complete = {"channel", "context", "extension"} <= keys and {"FAXMAIL_JOB", "FAXFILE"} <= setvars
    return PbxView(complete, pid, retries)


class PbxSpool:
    """pbx_spool.c's file operations on one call file (scan_service + safe_append)."""

    def __init__(self, spool: Spool, retry_time: int = 300) -> None:
        self.spool = spool
        self.retry_time = retry_time
        self.pid = os.getpid()

    def open_and_read(self) -> bytes | None:
        """fopen(fn, "r") + apply_outgoing + fclose; None: ENOENT, the call is forgotten."""
        try:
            with open(self.spool.path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def append(self, kind: str, attempt: int, at: float) -> None:
        """safe_append(): fopen(fn, "a") — creating the file if it is gone — then utime."""
        with open(self.spool.path, "a") as handle:
            handle.write(f"\n{kind}: {self.pid} {attempt} ({int(at)})\n")
        with contextlib.suppress(FileNotFoundError):  # "Unable to set utime": a warning only
            os.utime(self.spool.path, (at, at + self.retry_time))

    def scan(self) -> bytes | None:
        """One look: read; if the file is valid and due an attempt, StartRetry and dial."""
        data = self.open_and_read()
        if data is None:
            return None
        view = pbx_view(data)
        self.append("StartRetry", view.retries + 1, time.time() + self.retry_time)
        return data


# --- the model of pbx_spool's schedule ------------------------------------------------------


def test_states_read_from_the_lines_pbx_spool_appends() -> None:
    now = 1_800_000_000.0
    started = now - 10
    data = (
        BODY
        + (
            f"\nStartRetry: 4242 1 ({int(started - 400 + 300)})\n"
            f"\nEndRetry: 4242 1 ({int(started - 360)})\n"
            f"\nStartRetry: 4242 2 ({int(started + 300)})\n"
        ).encode()
    )
    state = CallState.read(data, mtime=started + 600)
    assert (state.retry_time, state.wait_time, state.max_retries) == (300, 45, 2)
    assert state.attempts_started == 2 and state.attempts_ended == 1
    assert state.running(now) == (2, started)
    # Long after WaitTime: Asterisk died during the attempt; it is not running any more.
    assert state.running(started + 45 + 121) is None
    # Next look: the StartRetry's time (start + RetryTime).
    assert state.next_look(now) == started + 300
    ended = CallState.read(data + f"\nEndRetry: 4242 2 ({int(now)})\n".encode(), now + 300)
    assert ended.running(now) is None
    assert ended.due(now) is None and ended.next_look(now) == started + 300


def test_a_fresh_call_file_is_due_at_its_mtime() -> None:
    now = 1_800_000_000.0
    assert CallState.read(BODY, mtime=now - 1).due(now) == now - 1  # just spooled: racing
    assert CallState.read(BODY, mtime=now - 60).due(now) is None  # never read: no Asterisk
    assert CallState.read(BODY, mtime=now + 2).due(now) == now + 2  # about to be
    assert CallState.read(BODY, mtime=now + 600).due(now) is None  # a delayed retry


def test_callfile_names_follow_the_rounds() -> None:
    assert callfile_name("0123456789abcdef", 1) == "0123456789abcdef.call"
    assert callfile_name("0123456789abcdef", 3) == "0123456789abcdef-r3.call"


# --- withdraw: the single cases -------------------------------------------------------------


def test_a_waiting_call_file_is_parked(spool: Spool) -> None:
    data = queue(spool)
    withdrawn = withdraw(spool.outgoing, spool.parking, NAME, grace=0.05)
    assert withdrawn.parked == spool.parking / NAME
    assert withdrawn.parked.read_bytes() == data
    assert not spool.path.exists()
    # pbx_spool's next look finds nothing: the call is forgotten.
    assert PbxSpool(spool).scan() is None
    root = spool.outgoing.parent
    folders = AsteriskSpool(spool.outgoing, root / "staging", root / "fax", root / "outgoing_done")
    found = locate(folders, NAME)
    assert found.where == "parked"


def test_a_call_being_dialled_is_refused(spool: Spool) -> None:
    queue(spool)
    assert PbxSpool(spool).scan() is not None  # Asterisk read it and dials
    dialled = spool.path.read_bytes()
    with pytest.raises(Busy, match=r"dialling it now \(attempt 1 of 3"):
        withdraw(spool.outgoing, spool.parking, NAME, grace=0.05)
    assert spool.path.read_bytes() == dialled
    assert not (spool.parking / NAME).exists()


def test_between_attempts_it_is_parked(spool: Spool) -> None:
    pbx = PbxSpool(spool)
    queue(spool)
    pbx.scan()
    pbx.append("EndRetry", 1, time.time())  # busy: attempt 1 is over, next in 300 s
    withdrawn = withdraw(spool.outgoing, spool.parking, NAME, grace=0.05)
    assert withdrawn.state.attempts_started == 1 and withdrawn.state.running(time.time()) is None


def test_it_waits_while_asterisk_is_due_to_look(spool: Spool) -> None:
    """A call file spooled a second ago: pbx_spool is reading it right now, or is not running.
    withdraw() waits until that is settled instead of racing it."""
    now = [time.time()]
    queue(spool, mtime=now[0] - 1)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    withdrawn = withdraw(
        spool.outgoing, spool.parking, NAME, grace=0.0, clock=lambda: now[0], sleep=sleep
    )
    assert slept and 2 < slept[0] < 4
    assert withdrawn.parked.exists()


def test_read_just_before_the_rename_is_put_back(spool: Spool) -> None:
    """pbx_spool read the file and appended its StartRetry between our look and our rename:
    the StartRetry is in the file we moved. It goes back, whole, with that line."""
    original = queue(spool, extra=b"\nStartRetry: 1 1 (1)\n\nEndRetry: 1 1 (2)\n")
    pbx = PbxSpool(spool)
    read: list[bytes | None] = []
    calls = [0]

    def clock() -> float:
        calls[0] += 1
        if calls[0] == 1:  # after withdraw()'s look, before its rename
            read.append(pbx.scan())
        return time.time()

    with pytest.raises(Busy, match="at the very moment"):
        withdraw(spool.outgoing, spool.parking, NAME, grace=0.05, clock=clock)
    assert read == [original]
    back = spool.path.read_bytes()
    assert back.startswith(original) and b"StartRetry: %d 2" % pbx.pid in back
    view = pbx_view(back)
    assert view == PbxView(complete=True, callingpid=pbx.pid, retries=1)
    assert list(spool.parking.iterdir()) == []


def test_start_retry_after_the_rename_makes_a_new_file_which_gets_our_lines(
    spool: Spool,
) -> None:
    """pbx_spool read the file before the rename and appends its StartRetry after it: fopen
    "a" creates a new outgoing/ file with that one line. Our lines are added to it, the
    attempts already made as Retry: lines, so pbx_spool reads the same call as before."""
    original = queue(spool, extra=b"\nStartRetry: 1 1 (1)\n\nEndRetry: 1 1 (2)\n")
    pbx = PbxSpool(spool)
    read: list[bytes | None] = []
    calls = [0]

    def clock() -> float:
        calls[0] += 1
        if calls[0] == 1:
            read.append(pbx.open_and_read())  # read before the rename...
        return time.time()

    def sleep(seconds: float) -> None:
        if not spool.path.exists():
            pbx.append("StartRetry", 2, time.time() + 300)  # ...StartRetry after it
        time.sleep(seconds)

    with pytest.raises(Busy, match="at the very moment"):
        withdraw(spool.outgoing, spool.parking, NAME, grace=0.2, clock=clock, sleep=sleep)
    assert read == [original]
    view = pbx_view(spool.path.read_bytes())
    assert view == PbxView(complete=True, callingpid=pbx.pid, retries=1)
    mtime = spool.path.stat().st_mtime
    assert mtime > time.time() + 500  # pbx_spool's own utime (start + 2 x RetryTime) kept
    assert list(spool.parking.iterdir()) == []
    # The attempt ends unanswered: pbx_spool appends to the restored file, and reads it whole.
    pbx.append("EndRetry", 2, time.time())
    assert pbx_view(spool.path.read_bytes()) == PbxView(True, 0, 2)


# --- the race, many times -------------------------------------------------------------------


def race_round(spool: Spool, rng: random.Random, grace: float) -> tuple[str, bytes | None, int]:
    """One cancel against one look of an adversarial pbx_spool, started together; (outcome,
    what "Asterisk" read, attempts the call file had made before)."""
    for leftover in spool.parking.glob("*"):
        leftover.unlink()
    spool.path.unlink(missing_ok=True)
    made = rng.choice((0, 1))
    queue(spool, extra=b"\nStartRetry: 1 1 (1)\n\nEndRetry: 1 1 (2)\n" * made)
    pbx = PbxSpool(spool)
    start = threading.Barrier(2)
    read: list[bytes | None] = []
    delay = rng.uniform(0, 0.0015)
    # Either side may start first: on a fast, idle machine a head start for "Asterisk" alone
    # let cancel win nearly every round, and the race was never run the other way round.
    cancel_delay = rng.uniform(0, 0.003)

    def asterisk() -> None:
        start.wait()
        deadline = time.perf_counter() + delay
        while time.perf_counter() < deadline:
            pass
        read.append(pbx.scan())

    # withdraw() waits seconds when the file looks due (pbx_spool's utime comes just after its
    # append): skip those seconds on a clock of its own, only the short polls really sleep.
    skipped = [0.0]

    def clock() -> float:
        return time.time() + skipped[0]

    def sleep(seconds: float) -> None:
        if seconds >= 1:
            skipped[0] += seconds
            seconds = 0.01
        time.sleep(seconds)

    thread = threading.Thread(target=asterisk)
    thread.start()
    start.wait()
    deadline = time.perf_counter() + cancel_delay
    while time.perf_counter() < deadline:
        pass
    try:
        withdraw(spool.outgoing, spool.parking, NAME, grace=grace, clock=clock, sleep=sleep)
        outcome = "cancelled"
    except Busy as exc:
        outcome = "refused-before" if "dialling it now" in str(exc) else "refused-raced"
    thread.join()
    return outcome, read[0], made


def check_round(spool: Spool, outcome: str, read: bytes | None, original_retries: int) -> None:
    pid = os.getpid()
    if outcome == "cancelled":
        assert read is None, "Asterisk read a call file that was cancelled"
        assert not spool.path.exists(), "a cancelled call file is back in outgoing/"
        parked = (spool.parking / NAME).read_bytes()
        assert pbx_view(parked).complete and pbx_view(parked).callingpid == 0
        return
    assert read is not None, f"{outcome}, but Asterisk never read the call file"
    assert pbx_view(read).complete, "Asterisk read half a call file"
    assert list(spool.parking.iterdir()) == [], "a refused cancel left a parked file"
    view = pbx_view(spool.path.read_bytes())
    assert view == PbxView(complete=True, callingpid=pid, retries=original_retries)


def test_cancel_racing_asterisk_is_cancelled_or_dialled_never_half(spool: Spool) -> None:
    rng = random.Random(7)
    seen: dict[str, int] = {}
    for _ in range(300):
        outcome, read, made = race_round(spool, rng, grace=0.05)
        check_round(spool, outcome, read, made)
        seen[outcome] = seen.get(outcome, 0) + 1
    print("outcomes:", seen)
    assert seen.get("cancelled", 0) > 0 and seen.get("refused-before", 0) > 0, seen
