"""What Asterisk is doing with a job's call file, and taking it back safely (`faxmail cancel`).

How pbx_spool treats a call file in outgoing/ (Asterisk 22, pbx_spool.c, inotify build):

- It opens a file by its path when it appears (rename into outgoing/), at the times it
  scheduled in memory, and for every file when it starts. Each time it reads the whole file,
  closes it, and — if it dials — appends `StartRetry: <pid> <attempt> (<next>)` to the path
  (fopen "a": it creates the file again if it is gone), sets the mtime, and dials in a
  thread. The file stays in outgoing/ during the attempts.
- Its schedule, all of it in the file: after `StartRetry (t)` it looks again at t (start +
  RetryTime); an attempt that was not answered appends `EndRetry (e)` and is looked at again at
  e + RetryTime; a look while the attempt still rings appends `DelayedRetry (d)`, next at
  d + RetryTime; at start-up it goes by the mtime. An answered call (and the last unanswered
  one) moves the file to outgoing_done/ at once, with `Status:`.
- A file that is gone when it looks is forgotten without a trace (ENOENT is not even logged).

So `withdraw()` takes a call file back like this:

1. Refuse while an attempt runs (a `StartRetry` not followed by `EndRetry`/`AbortRetry`, younger
   than WaitTime plus a margin): the call may be answered any moment, and nothing can stop a
   fax once Asterisk has read the file.
2. Wait while pbx_spool is due to look at the file within a few seconds (or just was, and may
   be writing its `StartRetry` now), then read it again.
3. rename() it out of outgoing/ into a parking directory on the same filesystem: atomic, so from
   that instant pbx_spool's next open by path fails and it forgets the call. That rename is the
   cancel.
4. Check that pbx_spool did not read the file just before the rename: its content must be
   unchanged, and for a grace period no new file may appear at the old path (pbx_spool's
   `StartRetry` append would create one). If either happened the call is being dialled: the
   file goes back (link(), or, when pbx_spool created a new one, our lines are appended to
   that with the attempt count as `Retry:` lines) and the cancel is refused.

Steps 1 and 2 keep the rename away from every moment pbx_spool has scheduled; step 4 catches what
no schedule shows (Asterisk starting up at that very moment). Either the file is parked and
Asterisk will never dial it, or Asterisk has it, whole, and dials it: never half.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from faxmail.asterisk.callfile import parse_callfile
from faxmail.asterisk.spool import Spool
from faxmail.core.durable import fsync_dir

AHEAD_S = 3.0  # pbx_spool's times are whole seconds: keep this far from its next look...
SETTLE_S = 3.0  # ...and give it this long after a look to have written its StartRetry
STALE_MARGIN_S = 120.0  # an attempt still "running" this long after its WaitTime: Asterisk died
GRACE_S = 0.5  # after the rename: time for a read-just-before to show its StartRetry

_MARK = re.compile(r"(\d+)\s+(-?\d+)\s+\((-?\d+)\)")
_MARK_KEYS = frozenset({"StartRetry", "EndRetry", "AbortRetry", "DelayedRetry"})

Where = Literal["outgoing", "done", "parked", "staging", "hold", "missing"]


@dataclass(frozen=True)
class Mark:
    """A line pbx_spool appended: `StartRetry: <pid> <attempt> (<time>)` and its kin."""

    kind: str
    pid: int
    attempt: int
    at: float


@dataclass(frozen=True)
class CallState:
    """A call file as pbx_spool would read it, plus its mtime."""

    marks: tuple[Mark, ...]
    retry_time: int
    wait_time: int
    max_retries: int
    mtime: float
    status: str | None  # the archive's `Status:` (outgoing_done only)

    @classmethod
    def read(cls, data: bytes, mtime: float) -> CallState:
        pairs = parse_callfile(data)
        values = {key.lower(): value for key, value in pairs}
        marks = []
        for key, value in pairs:
            match = _MARK.match(value)
            if key in _MARK_KEYS and match:
                pid, attempt, at = (int(g) for g in match.groups())
                marks.append(Mark(key, pid, attempt, float(at)))
        return cls(
            marks=tuple(marks),
            retry_time=_number(values.get("retrytime"), 300),
            wait_time=_number(values.get("waittime"), 45),
            max_retries=_number(values.get("maxretries"), 0),
            mtime=mtime,
            status=values.get("status"),
        )

    @property
    def attempts_started(self) -> int:
        return sum(1 for m in self.marks if m.kind == "StartRetry")

    @property
    def attempts_ended(self) -> int:
        """What pbx_spool counts as retries done: EndRetry and AbortRetry lines."""
        return sum(1 for m in self.marks if m.kind in ("EndRetry", "AbortRetry"))

    def running(self, now: float) -> tuple[int, float] | None:
        """(attempt, start time) of the attempt pbx_spool is making now, or None."""
        current: tuple[int, float] | None = None
        for mark in self.marks:
            if mark.kind == "StartRetry":
                current = (mark.attempt, mark.at - self.retry_time)
            elif mark.kind in ("EndRetry", "AbortRetry"):
                current = None
        if current is not None and now > current[1] + self.wait_time + STALE_MARGIN_S:
            return None  # Asterisk stopped during it; at its next start it aborts that one
        return current

    def looks(self) -> list[float]:
        """Every moment pbx_spool has scheduled to open the file (past ones included)."""
        times = [self.mtime]
        for mark in self.marks:
            if mark.kind == "StartRetry":
                times.append(mark.at)
            elif mark.kind in ("EndRetry", "DelayedRetry"):
                times.append(mark.at + self.retry_time)
        return times

    def next_look(self, now: float) -> float | None:
        future = [t for t in self.looks() if t > now]
        return min(future) if future else None

    def due(self, now: float) -> float | None:
        """A look of pbx_spool's close to `now` (so a rename now could race it), or None."""
        close = [t for t in self.looks() if now - SETTLE_S <= t <= now + AHEAD_S]
        return max(close) if close else None


def _number(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Located:
    where: Where
    path: Path | None
    state: CallState | None


def locate(spool: Spool, name: str) -> Located:
    """Where the call file `name` is now, and what it says."""
    places: list[tuple[Where, Path]] = [
        ("outgoing", spool.outgoing / name),
        ("parked", spool.parking / name),
        ("done", spool.done / name),
        ("hold", spool.hold / name),
        ("staging", spool.staging / name),
    ]
    for where, path in places:
        try:
            data = path.read_bytes()
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        return Located(where, path, CallState.read(data, mtime))
    return Located("missing", None, None)


class Busy(Exception):
    """Asterisk is dialling the call (or about to): not withdrawn. The message says why."""


class Gone(Exception):
    """The call file left outgoing/ by itself (Asterisk archived it) while we looked."""


@dataclass(frozen=True)
class Withdrawn:
    parked: Path
    state: CallState


def withdraw(
    outgoing: Path,
    parking: Path,
    name: str,
    *,
    grace: float = GRACE_S,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Withdrawn:
    """Take `outgoing/name` out of Asterisk's queue into `parking` (see the module docstring).

    Raises Busy when Asterisk is dialling it (the file stays, or is put back, whole), Gone
    when it is no longer in outgoing/, OSError for other trouble (nothing moved then).
    """
    path = outgoing / name
    parking.mkdir(mode=0o750, exist_ok=True)
    parked = parking / name
    if parked.exists():
        if not (path.exists() and os.path.samefile(parked, path)):
            raise FileExistsError(f"{parked} exists: an interrupted cancel; run it again")
        parked.unlink()  # the other name of a call file that was put back
    for _ in range(3):
        data, state = _read(path)
        now = clock()
        running = state.running(now)
        if running is not None:
            attempt, started = running
            raise Busy(
                f"Asterisk is dialling it now (attempt {attempt} of {state.max_retries + 1}, "
                f"started {time.strftime('%H:%M:%S', time.localtime(started))}); an answered "
                f"call cannot be stopped. Try again after the attempt, at the latest "
                f"{time.strftime('%H:%M:%S', time.localtime(started + state.wait_time + 5))}"
            )
        due = state.due(now)
        if due is None:
            break
        sleep(max(0.0, due + SETTLE_S - now) + 0.05)
    else:
        raise Busy("Asterisk keeps looking at it; try again in a minute")
    try:
        os.rename(path, parked)
    except FileNotFoundError as exc:
        raise Gone(str(path)) from exc
    _fsync_dir(outgoing)
    _fsync_dir(parking)
    # Did pbx_spool read it just before the rename? Its StartRetry went into the file (the
    # content changed) or, appended by path after the rename, into a new file at `path`.
    deadline = clock() + grace
    while True:
        if parked.read_bytes() != data or os.path.lexists(path):
            _put_back(parked, path)
            raise Busy(
                "Asterisk started dialling it at the very moment it was being cancelled; "
                "it was left queued. Try again after that attempt"
            )
        if clock() >= deadline:
            break
        sleep(0.002)
    return Withdrawn(parked, state)


def _read(path: Path) -> tuple[bytes, CallState]:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            mtime = os.fstat(handle.fileno()).st_mtime
    except FileNotFoundError as exc:
        raise Gone(str(path)) from exc
    return data, CallState.read(data, mtime)


def put_back(parked: Path, outgoing: Path) -> None:
    """Return a parked call file to outgoing/ (a cancel that could not be completed)."""
    _put_back(parked, outgoing / parked.name)


def _put_back(parked: Path, path: Path) -> None:
    try:
        os.link(parked, path)  # never over a file pbx_spool made meanwhile
    except FileExistsError:
        _append_to_new(parked, path)
    os.unlink(parked)
    _fsync_dir(path.parent)
    _fsync_dir(parked.parent)


def _append_to_new(parked: Path, path: Path) -> None:
    """pbx_spool re-created `path` with its StartRetry (or EndRetry) line: add what the call
    needs from the parked file — every line but pbx_spool's marks, then one `Retry:` line per
    attempt already over, which pbx_spool counts like the EndRetry lines they stand for."""
    kept, ended = [], 0
    for raw in parked.read_bytes().split(b"\n"):
        key = raw.split(b":", 1)[0].strip().decode("ascii", "replace")
        if key in ("EndRetry", "AbortRetry", "Retry"):
            ended += 1
        elif key not in _MARK_KEYS and key != "Status" and raw.strip():
            kept.append(raw)
    kept += [b"Retry: restored by faxmail"] * ended
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        before = os.fstat(descriptor)
        os.write(descriptor, b"\n" + b"\n".join(kept) + b"\n")  # one write: one append
        os.fsync(descriptor)
        # pbx_spool's mtime is its schedule after a restart: keep the one it set.
        os.utime(descriptor, ns=(before.st_atime_ns, before.st_mtime_ns))
    finally:
        os.close(descriptor)


def _fsync_dir(directory: Path) -> None:
    # Best effort: the rename has happened either way, and stopping here would leave a cancel
    # (or a put-back) half done.
    with contextlib.suppress(OSError):
        fsync_dir(directory)
