"""The far end of the test calls, as tests/e2e/e2e-remote.conf runs it, and its own record.

Number plan of the loopback "remote fax machines" (dialled as ``Local/<digits>@e2e-remote``):

* 03-5555-000X: ten fax machines on ONE analog line each: a second call to the same number
  while one is on the line hears busy;
* 03-5555-1XXX: fax machines behind one trunk of :data:`TRUNK_CHANNELS` channels, named
  :data:`TRUNK`: a call beyond them hears congestion, whichever numbers the calls are for;
* 03-5555-2XXX: a fax machine that drops the first call it answers (per number), mid-page, and
  receives every later one;
* as before, 0398765432 is always busy and every other number is a plain fax machine.

The far end writes one NOTICE line per arrival on a line (``e2e-line line=... calls=K of=C
result=answered|busy|congestion``, K counting the calls on the line with this one) and per call
to a fail-first machine (``e2e-fail ... result=dropped|received``). A call holds its line from
that arrival until its channel enters the h extension (the far machine has hung up; the
shipped h extension's faxmail-notify run is the receiving gateway's business, not the line's).
:func:`read_far_end` reads all of that back from Asterisk's own log: exact counts, no sampling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

#: What the far end's dialplan needs besides tests/infra/asterisk.py's FAX_MODULES:
#: Gosub/Return, LOCK/UNLOCK, GLOBAL(), DB()/DB_EXISTS(), TIMEOUT().
REMOTE_MODULES: tuple[str, ...] = (
    "app_stack",
    "func_lock",
    "func_global",
    "func_db",
    "func_timeout",
)

#: The far end's name of the trunk that the 03-5555-1XXX numbers share, and its channels.
TRUNK = "trunk2"
TRUNK_CHANNELS = 2


def one_line_number(n: int) -> str:
    """The n-th (0-9) fax machine on one analog line, written as staff write it."""
    if not 0 <= n <= 9:
        raise ValueError(f"there are ten one-line machines, 0 to 9, not {n}")
    return f"03-5555-000{n}"


def trunk_number(n: int) -> str:
    """The n-th (0-999) fax machine behind the 2-channel trunk."""
    return f"03-5555-1{n:03d}"


def fail_first_number(n: int) -> str:
    """The n-th (0-999) fax machine that drops the first call it answers."""
    return f"03-5555-2{n:03d}"


def dialled(number: str) -> str:
    """The digits the gateway dials (and the far end logs) for a number like 03-5555-0001."""
    return re.sub(r"\D", "", number)


# ---------------------------------------------------------------- what the far end logged


@dataclass(frozen=True)
class Arrival:
    """A call reaching a line of the far end, answered or refused."""

    at: float  # seconds since the epoch, Asterisk's clock
    line: str
    number: str  # as dialled
    channel: str  # the far end's channel, Local/...;2
    calls: int  # calls on the line at this moment, this one included
    channels: int  # what the line carries
    result: str  # answered, busy or congestion

    @property
    def answered(self) -> bool:
        return self.result == "answered"


@dataclass(frozen=True)
class LineRecord:
    """Everything one line of the far end saw."""

    name: str
    arrivals: tuple[Arrival, ...] = ()
    on_hook: Mapping[str, float] = field(default_factory=dict)  # channel -> its call's end

    @property
    def max_calls(self) -> int:
        """The most calls on the line at once, refused arrivals included (0: no call)."""
        return max((a.calls for a in self.arrivals), default=0)

    @property
    def refused(self) -> int:
        """Calls that met a line in use (busy or congestion)."""
        return sum(1 for a in self.arrivals if not a.answered)

    @property
    def answered(self) -> tuple[Arrival, ...]:
        return tuple(a for a in self.arrivals if a.answered)

    def durations(self) -> list[float]:
        """Seconds each answered call held the line, answer to hang-up, of the finished ones."""
        return [self.on_hook[a.channel] - a.at for a in self.answered if a.channel in self.on_hook]

    @property
    def unfinished(self) -> int:
        """Answered calls that had not hung up when the log was read."""
        return sum(1 for a in self.answered if a.channel not in self.on_hook)


@dataclass(frozen=True)
class FailFirstCall:
    """A call to a fail-first machine: ``dropped`` (the first one) or ``received``."""

    at: float
    number: str
    channel: str
    result: str


@dataclass(frozen=True)
class FarEnd:
    lines: Mapping[str, LineRecord]
    fail_first: tuple[FailFirstCall, ...]

    def line(self, name: str) -> LineRecord:
        """The record of one line (a one-line machine's line is its dialled number)."""
        return self.lines.get(name, LineRecord(name))


_STAMP = r"^\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\]"
_THREAD = r"\[[^\]]*\](?:\[[^\]]*\])?"  # [thread id][call id]
_FIELDS = r"(?P<fields>(?:\w+=\S*)(?: \w+=\S*)*)$"
_NOTICE = re.compile(
    rf"{_STAMP} NOTICE{_THREAD} Ext\. [^:]*: (?P<kind>e2e-line|e2e-fail) {_FIELDS}", re.M
)
_ON_HOOK = re.compile(
    rf'{_STAMP} VERBOSE{_THREAD} pbx\.c: Executing \[h@[^\]]*\] \w+\("(?P<channel>[^"]+)"', re.M
)


def _when(stamp: str) -> float:
    # logger.conf's dateformat "%F %T.%3q"; the chroot runs with TZ=UTC.
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp()


def read_far_end(log: str) -> FarEnd:
    """The far end's record in (a part of) Asterisk's ``full`` log."""
    arrivals: dict[str, list[Arrival]] = {}
    fail_first: list[FailFirstCall] = []
    for match in _NOTICE.finditer(log):
        at = _when(match["at"])
        values = dict(pair.split("=", 1) for pair in match["fields"].split(" "))
        if match["kind"] == "e2e-fail":
            fail_first.append(
                FailFirstCall(at, values["number"], values["channel"], values["result"])
            )
            continue
        arrival = Arrival(
            at=at,
            line=values["line"],
            number=values["number"],
            channel=values["channel"],
            calls=int(values["calls"]),
            channels=int(values["of"]),
            result=values["result"],
        )
        arrivals.setdefault(arrival.line, []).append(arrival)
    on_hook: dict[str, float] = {}
    for match in _ON_HOOK.finditer(log):
        on_hook.setdefault(match["channel"], _when(match["at"]))  # the h extension's first step
    lines = {
        name: LineRecord(
            name,
            tuple(calls),
            {a.channel: on_hook[a.channel] for a in calls if a.channel in on_hook},
        )
        for name, calls in arrivals.items()
    }
    return FarEnd(lines, tuple(fail_first))


def most_calls_per_number(lines: Iterable[LineRecord]) -> dict[str, int]:
    """The most answered calls each number had at once, over all these lines (e.g. the far
    ends of several Asterisk hosts, one clock): a call holds its number from its answer to
    its hang-up; an unfinished call holds it to the end of the record."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for line in lines:
        for call in line.answered:
            end = line.on_hook.get(call.channel, float("inf"))
            spans.setdefault(call.number, []).append((call.at, end))
    most: dict[str, int] = {}
    for number, calls in spans.items():
        # At each answer, count the calls to this number that had begun and not yet ended.
        most[number] = max(sum(1 for s, e in calls if s <= at < e) for at, _ in calls)
    return most


class _Logged(Protocol):
    def log(self) -> str: ...


class FarEndWatch:
    """The far end's record from now on: ``watch = FarEndWatch(asterisk)``, later
    ``watch.read()``. Only log lines written after the watch started count."""

    def __init__(self, asterisk: _Logged) -> None:
        self._asterisk = asterisk
        self._mark = len(asterisk.log())

    def read(self) -> FarEnd:
        return read_far_end(self._asterisk.log()[self._mark :])
