"""`faxmail cancel`'s withdraw() against the real pbx_spool of Asterisk 22 (the test chroot).

What it proves on the real thing: a call file taken back between attempts is forgotten by
Asterisk (no further attempt, no file re-created, nothing archived), one whose attempt is
ringing is refused and left as Asterisk has it, and a call file pbx_spool is due to look at
is not raced: withdraw() waits for that look. Each test takes 10-30 s of real time (the
RetryTime of its call file).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from faxmail.asterisk.callfile import CallFile, render_callfile
from faxmail.asterisk.spool import PARKING
from faxmail.asterisk.takeback import AHEAD_S, Busy, CallState, withdraw
from infra.asterisk import AsteriskInstance, StartAsterisk

pytestmark = pytest.mark.asterisk

EXTENSIONS = r"""
[general]
static = yes
writeprotect = yes

[line]
exten => busy,1,Busy(10)
exten => ring,1,Ringing()
 same => n,Wait(60)

[call]
exten => s,1,Verbose(0,ADMINTEST answered id=${TESTID})
 same => n,Hangup()
exten => failed,1,Verbose(0,ADMINTEST failed id=${TESTID} attempt=${AST_OUTGOING_ATTEMPT})
"""


@pytest.fixture
def spool(workdir: Path) -> Path:
    path = workdir / "asterisk"
    (path / "faxmail-staging").mkdir(parents=True)
    return path


def start(start_asterisk: StartAsterisk, spool: Path) -> AsteriskInstance:
    return start_asterisk(files={"extensions.conf": EXTENSIONS}, spool_dir=spool)


def queue(ast: AsteriskInstance, name: str, line: str, retry_time: int, **kw: float) -> Path:
    text = render_callfile(
        CallFile(
            channel=f"Local/{line}@line",
            context="call",
            extension="s",
            max_retries=2,
            retry_time=retry_time,
            wait_time=5,
            variables={"TESTID": name},
        )
    ).decode()
    return ast.spool_call_file(text, f"{name}.call", mtime=kw.get("mtime"))


def state_of(path: Path) -> CallState:
    return CallState.read(path.read_bytes(), path.stat().st_mtime)


def wait_for(path: Path, kind: str, count: int, timeout: float = 30) -> CallState:
    """Until pbx_spool has appended `count` `kind` lines to the call file."""
    deadline = time.monotonic() + timeout
    while True:
        state = state_of(path)
        if sum(1 for m in state.marks if m.kind == kind) >= count:
            return state
        assert time.monotonic() < deadline, f"no {kind} #{count} in {path.read_text()}"
        time.sleep(0.05)


def assert_forgotten(
    ast: AsteriskInstance, spool: Path, name: str, line: str, until: float, mark: int
) -> None:
    """Past the time pbx_spool had scheduled its next look: no attempt, no file."""
    time.sleep(max(0.0, until - time.time()))
    assert not (spool / "outgoing" / f"{name}.call").exists()
    assert not (spool / "outgoing_done" / f"{name}.call").exists()
    log = ast.log()[mark:]
    assert f"ADMINTEST failed id={name}" not in log
    assert f"Local/{line}@line" not in log, log  # "Attempting call on Local/..."


def test_taken_back_between_attempts_asterisk_forgets_it(
    start_asterisk: StartAsterisk, spool: Path
) -> None:
    ast = start(start_asterisk, spool)
    begin = ast.log_mark()
    path = queue(ast, "between", "busy", retry_time=10)
    state = wait_for(path, "EndRetry", 1)  # attempt 1: busy at once; the next in 10 s
    ast.wait_for_log(r"ADMINTEST failed id=between attempt=1", since=begin)
    (next_look,) = [m.at for m in state.marks if m.kind == "StartRetry"]
    assert next_look - time.time() > AHEAD_S + 1, state
    mark = ast.log_mark()
    withdrawn = withdraw(spool / "outgoing", spool / "faxmail-staging" / PARKING, path.name)
    assert withdrawn.parked.exists() and withdrawn.state.attempts_started == 1
    assert_forgotten(ast, spool, "between", "busy", next_look + 3, mark)


def test_refused_while_ringing_then_taken_back(start_asterisk: StartAsterisk, spool: Path) -> None:
    ast = start(start_asterisk, spool)
    path = queue(ast, "ringing", "ring", retry_time=15)
    wait_for(path, "StartRetry", 1)  # Asterisk dials: the far end rings for WaitTime (5 s)
    before = path.read_bytes()
    with pytest.raises(Busy, match=r"dialling it now \(attempt 1 of 3"):
        withdraw(spool / "outgoing", spool / "faxmail-staging" / PARKING, path.name)
    assert path.read_bytes() == before  # left exactly as Asterisk has it
    state = wait_for(path, "EndRetry", 1, timeout=20)  # no answer after WaitTime
    (next_look,) = [m.at for m in state.marks if m.kind == "StartRetry"]
    mark = ast.log_mark()
    withdraw(spool / "outgoing", spool / "faxmail-staging" / PARKING, path.name)
    assert_forgotten(ast, spool, "ringing", "ring", next_look + 3, mark)


def test_not_raced_when_asterisk_is_due_to_look(start_asterisk: StartAsterisk, spool: Path) -> None:
    """Due in a second: withdraw() waits for pbx_spool's look instead of racing it, finds the
    attempt running, and refuses; Asterisk dials the file it read, whole."""
    ast = start(start_asterisk, spool)
    mark = ast.log_mark()
    path = queue(ast, "due", "ring", retry_time=30, mtime=time.time() + 1)
    started = time.monotonic()
    with pytest.raises(Busy, match="dialling it now"):
        withdraw(spool / "outgoing", spool / "faxmail-staging" / PARKING, path.name)
    assert time.monotonic() - started > 2  # it waited for the look
    assert state_of(path).attempts_started == 1
    ast.wait_for_log(r"ADMINTEST failed id=due attempt=1", since=mark, timeout=20)
    assert list((spool / "faxmail-staging" / PARKING).iterdir()) == []
