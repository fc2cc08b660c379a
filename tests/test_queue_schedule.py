"""The queue's scheduling decision: channels per line, one call per number, FIFO, waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from faxmail.core.queuepolicy import Fallback, QuietWindow
from faxmail.queue.model import CallInFlight, Line, Start, WaitingJob
from faxmail.queue.quiet import is_quiet
from faxmail.queue.schedule import in_order, next_due, plan

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo
ONE = Line("analog", 1)
TWO = Line("trunk", 2)


def job(
    job_id: str,
    number: str = "+81312345678",
    line: str = "analog",
    *,
    age_s: float = 60,
    due_in_s: float = 0,
    attempts: int = 0,
) -> WaitingJob:
    return WaitingJob(
        job_id=job_id,
        number=number,
        line=line,
        not_before=NOW + timedelta(seconds=due_in_s),
        attempts=attempts,
        enqueued_at=NOW - timedelta(seconds=age_s),
    )


def call(job_id: str, number: str = "+81312345678", line: str = "analog") -> CallInFlight:
    return CallInFlight(job_id, number, line, NOW - timedelta(seconds=30))


def night(prefix: str = "+81") -> QuietWindow:
    return QuietWindow.model_validate(
        {"prefixes": [prefix], "from": "21:00", "to": "08:00", "timezone": "Asia/Tokyo"}
    )


def test_four_faxes_to_one_number_go_one_after_another() -> None:
    # The case: four faxes to one customer on one analog line.
    waiting = [job(f"j{i}", age_s=10 - i) for i in range(4)]
    assert [s.job_id for s in plan(waiting, [], [ONE], NOW)] == ["j0"]
    # While j0's call is in flight nothing else starts; when it ends, the next one does.
    assert plan(waiting[1:], [call("j0")], [ONE], NOW) == []
    assert [s.job_id for s in plan(waiting[1:], [], [ONE], NOW)] == ["j1"]


def test_ten_numbers_on_two_channels() -> None:
    waiting = [job(f"j{i}", f"+8131234{i:04}", "trunk", age_s=100 - i) for i in range(10)]
    first = plan(waiting, [], [TWO], NOW)
    assert [s.job_id for s in first] == ["j0", "j1"]
    in_flight = [call(s.job_id, s.number, s.line) for s in first]
    assert plan(waiting[2:], in_flight, [TWO], NOW) == []
    assert [s.job_id for s in plan(waiting[2:], in_flight[1:], [TWO], NOW)] == ["j2"]


def test_one_call_per_number_across_lines() -> None:
    waiting = [job("a", line="analog", age_s=5), job("b", line="trunk", age_s=4)]
    assert [s.job_id for s in plan(waiting, [], [ONE, TWO], NOW)] == ["a"]
    assert plan(waiting[1:], [call("a")], [ONE, TWO], NOW) == []


def test_a_busy_number_does_not_hold_up_the_next_number() -> None:
    waiting = [job("a", "+8131111", "trunk", age_s=9), job("b", "+8132222", "trunk", age_s=8)]
    started = plan(waiting, [call("x", "+8131111", "trunk")], [TWO], NOW)
    assert [s.job_id for s in started] == ["b"]


def test_start_carries_attempt_and_fallback() -> None:
    fallback = Fallback(ecm=False)
    waiting = WaitingJob("a", "+8131", "analog", NOW, 2, NOW, fallback)
    assert plan([waiting], [], [ONE], NOW) == [Start("a", "+8131", "analog", 3, fallback)]


def test_not_before_in_the_future_waits() -> None:
    waiting = [job("later", age_s=99, due_in_s=30), job("now", "+8132", age_s=1)]
    assert [s.job_id for s in plan(waiting, [], [ONE], NOW)] == ["now"]
    assert next_due(waiting, NOW) == NOW + timedelta(seconds=30)
    assert [s.job_id for s in plan(waiting, [], [ONE], NOW + timedelta(seconds=30))] == ["later"]


def test_quiet_hours_wait_instead_of_failing() -> None:
    tokyo_night = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)  # 22:00 in Tokyo
    waiting = [job("jp", "+81312345678", age_s=9), job("us", "+12125551234", age_s=1)]
    started = plan(waiting, [], [Line("analog", 2)], tokyo_night, [night()])
    assert [s.job_id for s in started] == ["us"]
    # It may start at 08:00 Tokyo time, which is 23:00 UTC.
    assert next_due(waiting[:1], tokyo_night, [night()]) == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)


def test_unknown_line_and_listed_twice() -> None:
    waiting = [job("a", line="gone"), job("b", "+8132"), job("b", "+8132")]
    assert [s.job_id for s in plan(waiting, [], [ONE], NOW)] == ["b"]
    assert plan(waiting[1:], [call("b", "+8132")], [ONE, Line("gone", 1)], NOW) == []


def test_ties_break_by_job_id() -> None:
    same = [job("b", "+8132", age_s=5), job("a", "+8131", age_s=5)]
    assert [j.job_id for j in in_order(same)] == ["a", "b"]
    assert plan(same, [], [ONE], NOW)[0].job_id == "a"


def test_next_due_none_when_nothing_waits_for_time() -> None:
    assert next_due([job("a")], NOW) is None
    assert next_due([], NOW) is None


# ------------------------------------------------------------------------- properties

NUMBERS = [f"+8131234{i}" for i in range(5)] + ["+12125551234", "+4930123"]
LINES = [Line("a", 1), Line("b", 2), Line("c", 3)]
CHANNELS = {line.name: line.channels for line in LINES}


@st.composite
def queues(draw: st.DrawFn) -> tuple[list[WaitingJob], list[CallInFlight]]:
    count = draw(st.integers(0, 14))
    waiting = []
    for i in range(count):
        waiting.append(
            WaitingJob(
                job_id=f"w{i:02}",
                number=draw(st.sampled_from(NUMBERS)),
                line=draw(st.sampled_from([line.name for line in LINES])),
                not_before=NOW + timedelta(minutes=draw(st.integers(-60, 60))),
                attempts=draw(st.integers(0, 5)),
                enqueued_at=NOW - timedelta(minutes=draw(st.integers(0, 600))),
            )
        )
    # Calls in flight, as a correct dispatcher leaves them: within channels, one per number.
    in_flight: list[CallInFlight] = []
    for i, number in enumerate(draw(st.lists(st.sampled_from(NUMBERS), unique=True))):
        line = draw(st.sampled_from(LINES))
        if sum(1 for c in in_flight if c.line == line.name) < line.channels:
            in_flight.append(CallInFlight(f"f{i}", number, line.name, NOW))
    return waiting, in_flight


HOURS = st.sampled_from([None, ("21:00", "08:00"), ("09:00", "17:00"), ("00:00", "06:00")])
MOMENTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


def windows(hours: tuple[str, str] | None) -> list[QuietWindow]:
    if hours is None:
        return []
    spec = {"prefixes": ["+81"], "from": hours[0], "to": hours[1], "timezone": "Asia/Tokyo"}
    return [QuietWindow.model_validate(spec)]


def _eligible(
    job: WaitingJob, in_flight: list[CallInFlight], quiet: list[QuietWindow], now: datetime
) -> bool:
    """May `job` start, judged against the calls in flight alone (before any other start)?"""
    return (
        job.not_before <= now
        and job.number not in {c.number for c in in_flight}
        and not _full(job.line, in_flight)
        and not is_quiet(job.number, quiet, now)
    )


def _full(line: str, calls: list[CallInFlight]) -> bool:
    return sum(1 for c in calls if c.line == line) >= CHANNELS[line]


@settings(max_examples=400, derandomize=True, deadline=None)
@given(queues(), HOURS, MOMENTS)
def test_plan_keeps_every_rule(
    queue: tuple[list[WaitingJob], list[CallInFlight]],
    hours: tuple[str, str] | None,
    shift: datetime,
) -> None:
    waiting, in_flight = queue
    quiet = windows(hours)
    now = NOW.replace(hour=shift.hour, minute=shift.minute)  # any time of day
    waiting = [
        WaitingJob(j.job_id, j.number, j.line, j.not_before - NOW + now, j.attempts, j.enqueued_at)
        for j in waiting
    ]
    starts = plan(waiting, in_flight, LINES, now, quiet)
    by_id = {j.job_id: j for j in waiting}
    after = in_flight + [CallInFlight(s.job_id, s.number, s.line, now) for s in starts]

    # never more calls on a line than its channels
    for line in LINES:
        assert sum(1 for c in after if c.line == line.name) <= line.channels
    # never two calls to one number
    assert len({c.number for c in after}) == len(after)
    # every start is due, outside quiet hours, and the job's own next attempt
    for s in starts:
        assert by_id[s.job_id].not_before <= now
        assert not is_quiet(s.number, quiet, now)
        assert s.attempt == by_id[s.job_id].attempts + 1
    # no starvation: the oldest job that may start does start
    eligible = [j for j in in_order(waiting) if _eligible(j, in_flight, quiet, now)]
    if eligible:
        assert eligible[0].job_id in {s.job_id for s in starts}
    # nothing left idle: a job not started is held by time, quiet hours, its number or its line
    started = {s.job_id for s in starts}
    numbers = {c.number for c in after}
    for j in waiting:
        if j.job_id in started:
            continue
        held = j.not_before > now or is_quiet(j.number, quiet, now)
        assert held or j.number in numbers or _full(j.line, after)
    # first come first served on each line: a job held back only by its full line is younger
    # than every job started on that line
    for j in waiting:
        if j.job_id in started or not _eligible(j, in_flight, quiet, now):
            continue
        if j.number in {by_id[s].number for s in started}:
            continue
        for s in starts:
            if s.line == j.line:
                assert (by_id[s.job_id].enqueued_at, s.job_id) < (j.enqueued_at, j.job_id)
    # deterministic: the same answer for the same queue in any order
    assert plan(list(reversed(waiting)), in_flight, LINES, now, quiet) == starts
