"""Quiet hours: windows of local time in which a number is not called; its jobs wait.

A window is wall-clock time in its own zone, from `from` (inclusive) to `to` (exclusive), and
crosses midnight when `from` is later than `to`. Nothing here reads the clock: `now` is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from faxmail.core.queuepolicy import QuietWindow


def applies(window: QuietWindow, number: str) -> bool:
    return not window.prefixes or any(number.startswith(p) for p in window.prefixes)


def inside(window: QuietWindow, moment: datetime) -> bool:
    """Is `moment` (aware) inside the window, by the wall clock of the window's zone?"""
    local = moment.astimezone(window.zone).time()
    if window.start < window.end:
        return window.start <= local < window.end
    return local >= window.start or local < window.end  # across midnight


def is_quiet(number: str, windows: Sequence[QuietWindow], now: datetime) -> bool:
    return any(applies(w, number) and inside(w, now) for w in windows)


def _end_of(window: QuietWindow, moment: datetime) -> datetime:
    """The end of the window that holds `moment`, in UTC; later than `moment`."""
    local = moment.astimezone(window.zone)
    day = local.date() if local.time() < window.end else local.date() + timedelta(days=1)
    # A wall time a clock change skips maps to the instant after the gap (late, never early);
    # one it repeats is taken at its first pass, or at its second when `moment` is past that.
    for fold in (0, 1):
        end = datetime.combine(day, window.end, tzinfo=window.zone).replace(fold=fold)
        if end.astimezone(UTC) > moment:
            return end.astimezone(UTC)
    tomorrow = datetime.combine(day + timedelta(days=1), window.end, tzinfo=window.zone)
    return tomorrow.astimezone(UTC)


def quiet_until(number: str, windows: Sequence[QuietWindow], now: datetime) -> datetime:
    """The first moment from `now` on at which no window keeps `number` waiting (`now` itself
    when none does). Windows that together cover the whole day have no such moment: then the
    result is only a time to look again, and the scheduler still finds the number quiet."""
    moment = now
    # Each pass leaves at least one window; a repeated hour may bring one back once.
    for _ in range(2 * len(windows) + 2):
        active = [w for w in windows if applies(w, number) and inside(w, moment)]
        if not active:
            return moment
        moment = max(_end_of(w, moment) for w in active)
    return moment
