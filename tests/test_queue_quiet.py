"""Quiet hours with an injected clock: windows by prefix, across midnight, in their own zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from faxmail.core.queuepolicy import QuietWindow
from faxmail.queue.quiet import applies, inside, is_quiet, quiet_until


def window(start: str, end: str, zone: str = "Asia/Tokyo", *prefixes: str) -> QuietWindow:
    spec = {"prefixes": list(prefixes), "from": start, "to": end, "timezone": zone}
    return QuietWindow.model_validate(spec)


def tokyo(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC) - timedelta(hours=9)


NIGHT = window("21:00", "08:00", "Asia/Tokyo", "+81")
JP = "+81312345678"


def test_a_window_across_midnight() -> None:
    assert not inside(NIGHT, tokyo(1, 20, 59))
    assert inside(NIGHT, tokyo(1, 21, 0))
    assert inside(NIGHT, tokyo(1, 23, 59))
    assert inside(NIGHT, tokyo(2, 0, 0))
    assert inside(NIGHT, tokyo(2, 7, 59))
    assert not inside(NIGHT, tokyo(2, 8, 0))


def test_a_window_within_one_day() -> None:
    lunch = window("12:00", "13:00")
    assert inside(lunch, tokyo(1, 12, 30))
    assert not inside(lunch, tokyo(1, 13, 0))
    assert not inside(lunch, tokyo(1, 11, 59))


def test_prefixes_choose_the_numbers() -> None:
    assert applies(NIGHT, JP)
    assert not applies(NIGHT, "+12125551234")
    assert applies(window("21:00", "08:00"), "+12125551234")  # no prefixes: every number
    assert is_quiet(JP, [NIGHT], tokyo(1, 22))
    assert not is_quiet("+12125551234", [NIGHT], tokyo(1, 22))


def test_the_window_is_read_in_its_own_zone() -> None:
    # 22:00 in Tokyo is 08:00 in New York (EST): quiet for Japan, not for a New York window.
    new_york = window("21:00", "08:00", "America/New_York", "+1")
    assert is_quiet(JP, [NIGHT, new_york], tokyo(1, 22))
    assert not is_quiet("+12125551234", [NIGHT, new_york], tokyo(1, 22))


def test_quiet_until_the_window_ends() -> None:
    assert quiet_until(JP, [NIGHT], tokyo(1, 22)) == tokyo(2, 8)
    assert quiet_until(JP, [NIGHT], tokyo(2, 3)) == tokyo(2, 8)
    assert quiet_until(JP, [NIGHT], tokyo(2, 9)) == tokyo(2, 9)  # not quiet: now
    # Overlapping windows: until the later end.
    early = window("07:00", "09:30", "Asia/Tokyo", "+8131")
    assert quiet_until(JP, [NIGHT, early], tokyo(2, 3)) == tokyo(2, 9, 30)


def test_a_window_ending_at_24_00() -> None:
    evening = window("18:00", "24:00")
    assert inside(evening, tokyo(1, 23, 59))
    assert not inside(evening, tokyo(2, 0, 0))
    assert quiet_until(JP, [evening], tokyo(1, 19)) == tokyo(2, 0)


def test_windows_covering_the_whole_day_never_release_the_number() -> None:
    day, night = window("08:00", "21:00"), window("21:00", "08:00")
    moment = quiet_until(JP, [day, night], tokyo(1, 12))
    assert moment > tokyo(1, 12)
    assert is_quiet(JP, [day, night], moment)  # only a time to look again


def test_daylight_saving_never_ends_a_window_early() -> None:
    # Berlin springs forward on 2026-03-29 at 02:00 → 03:00; 02:30 does not exist that night.
    gap = window("22:00", "02:30", "Europe/Berlin")
    before = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET
    end = quiet_until(JP, [gap], before)
    assert end == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST, after the gap
    assert all(is_quiet(JP, [gap], before + timedelta(minutes=m)) for m in range(0, 30))
    # It falls back on 2026-10-25 at 03:00 → 02:00; 02:30 comes twice.
    twice = window("22:00", "02:30", "Europe/Berlin")
    first = datetime(2026, 10, 25, 0, 10, tzinfo=UTC)  # 02:10 CEST
    assert quiet_until(JP, [twice], first) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    second = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET, the second time round
    assert quiet_until(JP, [twice], second) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


# ------------------------------------------------------------------------- properties

CLOCKS = st.sampled_from(["00:00", "06:30", "08:00", "12:00", "17:45", "21:00", "23:59"])
MOMENTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(CLOCKS, CLOCKS, MOMENTS)
def test_quiet_until_is_the_first_moment_outside(start: str, end: str, now: datetime) -> None:
    """Asia/Tokyo has no clock changes: every minute up to quiet_until is quiet, and it is
    not; the local wall time at it is the window's end."""
    if start == end:
        return
    quiet = [window(start, end)]
    until = quiet_until(JP, quiet, now)
    assert until >= now
    assert not is_quiet(JP, quiet, until)
    minutes = int((until - now).total_seconds() // 60)
    assert minutes < 24 * 60
    assert all(is_quiet(JP, quiet, now + timedelta(minutes=m)) for m in range(minutes))
    if until > now:
        assert until.astimezone(quiet[0].zone).strftime("%H:%M") == end
    # the same answer from any moment inside the window
    if minutes > 1:
        assert quiet_until(JP, quiet, now + timedelta(minutes=minutes // 2)) == until
