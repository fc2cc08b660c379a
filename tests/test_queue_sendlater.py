"""Send later: a "[at 18:30]" Subject tag, read in the policy's zone, bounded by the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faxmail.core.queuepolicy import SendLater
from faxmail.queue.sendlater import SendLaterRefused, send_later

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=TOKYO)
RULES = SendLater(timezone="Asia/Tokyo", max_ahead_hours=72)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=TOKYO)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Order [at 18:30]", at(1, 18, 30)),
        ("[at 9:15] order", at(2, 9, 15)),  # 09:15 is past today: tomorrow's
        ("[AT 10:00]", at(2, 10, 0)),  # exactly now counts as past
        ("注文書 [at 2026-12-02 09:00]", at(2, 9, 0)),
        ("[ at  2026-12-03   23:59 ]", at(3, 23, 59)),
        ("[at18:30]", at(1, 18, 30)),
    ],
)
def test_the_forms_a_sender_can_write(subject: str, expected: datetime) -> None:
    assert send_later(subject, RULES, NOW) == expected


@pytest.mark.parametrize(
    "subject", ["Order 18:30", "[at home] order", "[attn: sales]", "at 18:30", "[at 18:30"]
)
def test_no_request(subject: str) -> None:
    assert send_later(subject, RULES, NOW) is None


@pytest.mark.parametrize(
    ("subject", "words"),
    [
        ("[at 25:00]", "[at 25:00] is not a time like [at 18:30]"),
        ("[at 18:61]", "is not a time"),
        ("[at 6pm]", "is not a time"),
        ("[at 2026-02-30 09:00]", "is not a time"),
        ("[at 2026-12-01 09:59]", "2026-12-01 09:59 is already past"),
        ("[at 2026-12-04 10:01]", "is more than 72 hours ahead"),
        ("[at 12:00] [at 13:00]", "more than one time"),
    ],
)
def test_refusals_say_why(subject: str, words: str) -> None:
    refused = send_later(subject, RULES, NOW)
    assert isinstance(refused, SendLaterRefused)
    assert words in refused.why
    reply = refused.reply
    assert (reply.code, reply.enhanced) == ("550", "5.5.4")
    assert words in reply.text and reply.text.startswith("the fax cannot be sent at the time")


def test_disabled_refuses_rather_than_faxing_at_once() -> None:
    refused = send_later("[at 18:30]", SendLater(enabled=False), NOW)
    assert isinstance(refused, SendLaterRefused)
    assert "not enabled" in refused.why
    assert send_later("no tag", SendLater(enabled=False), NOW) is None


def test_a_short_bound_refuses_even_a_time_of_day() -> None:
    refused = send_later("[at 09:00]", SendLater(max_ahead_hours=12), NOW)
    assert isinstance(refused, SendLaterRefused)
    assert "more than 12 hours ahead" in refused.why


def test_without_a_zone_the_time_is_read_in_now_s_zone() -> None:
    now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
    assert send_later("[at 18:30]", SendLater(), now) == datetime(2026, 12, 1, 18, 30, tzinfo=UTC)
    assert send_later("[at 18:30]", RULES, now) == at(1, 18, 30)


def test_a_time_a_clock_change_skips_becomes_the_instant_after() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    rules = SendLater(timezone="Europe/Berlin")
    now = datetime(2026, 3, 28, 12, 0, tzinfo=berlin)
    when = send_later("[at 2026-03-29 02:30]", rules, now)
    assert when == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        send_later("[at 18:30]", RULES, datetime(2026, 12, 1, 10, 0))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    st.integers(0, 23),
    st.integers(0, 59),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1)),
)
def test_a_time_of_day_is_the_next_one(hour: int, minute: int, naive_now: datetime) -> None:
    now = naive_now.replace(tzinfo=TOKYO)
    when = send_later(f"[at {hour}:{minute:02}]", RULES, now)
    assert isinstance(when, datetime)
    assert now < when <= now + timedelta(days=1)
    assert (when.astimezone(TOKYO).hour, when.astimezone(TOKYO).minute) == (hour, minute)
