"""The policy's keys for the outbound queue: `lines`, `retry`, `quiet_hours`, `send_later`.

policy.py includes them as top-level keys; they live here so that neither file grows past what
one can hold in one's head. faxmail.queue decides with them (which line, when to call again,
when to wait); every key is documented in README.md ("Lines and the queue").
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from faxmail.core.asteriskhosts import HOST_NAME, LOCAL

# The characters of fax.channel, a dial string template such as "PJSIP/{number}@trunk".
CHANNEL_PATTERN = r"^[A-Za-z0-9/@+._:{}-]+$"
_PREFIX = re.compile(r"^\+[0-9]{1,15}$")
_CLOCK = re.compile(r"^([01]?[0-9]|2[0-4]):([0-5][0-9])$")


class _Strict(BaseModel):
    # As policy.Strict (which cannot be imported here: policy.py imports this module).
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_channel(channel: str) -> str:
    """A dial string template must hold {number} and no other placeholder."""
    if "{number}" not in channel:
        raise ValueError("channel must contain {number}")
    try:  # as enqueue fills it in: any other {placeholder} would fail every fax
        channel.format(number="0")
    except (KeyError, IndexError, ValueError):
        raise ValueError("channel may contain no {placeholder} but {number}") from None
    return channel


def _check_prefixes(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    for prefix in prefixes:
        if not _PREFIX.match(prefix):
            raise ValueError(f"{prefix!r} is not an E.164 prefix like '+81' or '+8133'")
    return prefixes


Prefixes = Annotated[tuple[str, ...], AfterValidator(_check_prefixes)]


class DialLine(_Strict):
    """One line or trunk that fax calls go out on."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    channel: str = Field(pattern=CHANNEL_PATTERN)  # as fax.channel: "PJSIP/{number}@trunk"
    channels: int = Field(default=1, ge=1, le=1000)  # concurrent calls it carries
    prefixes: Prefixes = ()  # E.164 prefixes it serves; empty: every number no other line has
    # The Asterisk that dials it: "local" (this host's spool) or a name of the settings'
    # asterisk_hosts. Lines with the same prefixes on two hosts share those numbers' calls.
    host: str = Field(default=LOCAL, pattern=HOST_NAME)

    @field_validator("channel")
    @classmethod
    def _channel(cls, channel: str) -> str:
        return check_channel(channel)


def _check_lines(lines: tuple[DialLine, ...]) -> tuple[DialLine, ...]:
    if not lines:
        return lines  # no `lines:`: fax.channel is the one line (Policy.dial_lines)
    names = [line.name for line in lines]
    if len(set(names)) != len(names):
        raise ValueError(f"line names must be unique: {names}")
    if all(line.prefixes for line in lines):
        raise ValueError("one line needs no prefixes, so that every allowed number has a line")
    # A prefix (or "no prefix") may be on one line per Asterisk host: the same numbers on two
    # hosts is how a host that is down leaves its calls to the other.
    served: dict[tuple[str, str], str] = {}
    for line in lines:
        for prefix in line.prefixes:
            if (prefix, line.host) in served:
                raise ValueError(
                    f"prefix {prefix} is on two lines: {served[prefix, line.host]}, {line.name}"
                )
            served[prefix, line.host] = line.name
    return lines


Lines = Annotated[tuple[DialLine, ...], AfterValidator(_check_lines)]

MaxRate = Literal[2400, 4800, 7200, 9600, 12000, 14400]  # what FAXOPT(maxrate) accepts


class Fallback(_Strict):
    """What one call after a failed fax changes; unset keys stay as the dialplan sets them."""

    ecm: bool | None = None  # error correction mode
    max_rate: MaxRate | None = None  # bit/s
    t38: bool | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> Fallback:
        if self.ecm is None and self.max_rate is None and self.t38 is None:
            raise ValueError("a fallback sets at least one of ecm, max_rate, t38")
        return self

    def describe(self) -> str:
        """For a result mail's attempt history: "ECM off, at most 9600 bit/s"."""
        parts = []
        if self.ecm is not None:
            parts.append(f"ECM {'on' if self.ecm else 'off'}")
        if self.max_rate is not None:
            parts.append(f"at most {self.max_rate} bit/s")
        if self.t38 is not None:
            parts.append(f"T.38 {'on' if self.t38 else 'off'}")
        return ", ".join(parts)


class Retries(_Strict):
    """When faxmail calls again: each call is one dial attempt, the next one is ours to place."""

    # Real tries in all (no answer, failed fax, busy beyond max_busy_attempts).
    # None: fax.max_retries + 1, the dial attempts a call file allows today.
    max_attempts: int | None = Field(default=None, ge=1, le=20)
    # Busy or congested: the far machine is on another call; try again soon, spread at random
    # by busy_jitter (0.25: from 45 to 75 s) so that several jobs do not redial in step.
    busy_retry_s: float = Field(default=60, ge=5, le=3600)
    busy_jitter: float = Field(default=0.25, ge=0, le=0.5)
    max_busy_attempts: int = Field(default=10, ge=0, le=100)  # not counted as real tries
    # The n-th call after an answered call whose fax failed uses fallbacks[n-1] (the last
    # one again beyond the list). No answer and failed fax wait fax.retry_time.
    fallbacks: tuple[Fallback, ...] = ()


def _clock(value: object) -> time:
    if not isinstance(value, str):
        # PyYAML reads an unquoted 21:00 as the number 1260 (YAML 1.1 base 60).
        raise ValueError('write the time in quotes, like "21:00"')
    match = _CLOCK.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a time like '21:00'")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour == 24 and minute:
        raise ValueError(f"{value!r} is not a time like '21:00'")
    return time(hour % 24, minute)  # "24:00" is midnight, the end of the day


Clock = Annotated[time, BeforeValidator(_clock)]


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use a name like Asia/Tokyo)") from None
    return name


Zone = Annotated[str, AfterValidator(_check_zone)]


class QuietWindow(_Strict):
    """No calls to these numbers from `from` to `to` local time (may cross midnight)."""

    prefixes: Prefixes = ()  # empty: every number
    start: Clock = Field(alias="from")
    end: Clock = Field(alias="to")
    timezone: Zone

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietWindow:
        if self.start == self.end:
            raise ValueError("from and to are the same time: the window would be empty")
        return self


class SendLater(_Strict):
    """Whether a sender may ask for a later time in the Subject ("[at 18:30]"), how far ahead."""

    enabled: bool = True  # False: a mail asking for a later time is refused
    max_ahead_hours: float = Field(default=168, gt=0, le=8784)
    timezone: Zone | None = None  # how the Subject's times are read; None: the host's time zone
