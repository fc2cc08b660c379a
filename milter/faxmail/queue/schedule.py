"""Which calls to place now: the queue's one decision, a pure function of its inputs.

The rules, in order of strength:
- a line never carries more calls than its channels; of the lines serving a number (one per
  Asterisk host), a call takes the one with the most free channels;
- a number gets one call at a time, across all jobs and senders (the far machine has one line
  too): its next job starts only once the call in flight has ended;
- a job waits, and does not fail, while its not-before time is ahead or a quiet-hours window
  holds its number;
- among the jobs that may start, first come first served by enqueued-at (then job id, so that
  equal times give the same answer every time).
Jobs held back by a full line or a number in use are started by a later call of plan(), after
a call ends; `next_due` is when time alone may let a waiting job start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from faxmail.core.queuepolicy import QuietWindow
from faxmail.queue.model import CallInFlight, Line, Start, WaitingJob
from faxmail.queue.quiet import is_quiet, quiet_until


def in_order(waiting: Iterable[WaitingJob]) -> list[WaitingJob]:
    """First come, first served; the job id breaks ties."""
    return sorted(waiting, key=lambda job: (job.enqueued_at, job.job_id))


def plan(
    waiting: Iterable[WaitingJob],
    in_flight: Iterable[CallInFlight],
    lines: Iterable[Line],
    now: datetime,
    quiet: Sequence[QuietWindow] = (),
) -> list[Start]:
    """The calls to place now, in the order to place them."""
    channels = {line.name: line.channels for line in lines}
    in_use = Counter[str]()
    numbers_in_use: set[str] = set()
    placed: set[str] = set()
    for call in in_flight:
        in_use[call.line] += 1
        numbers_in_use.add(call.number)
        placed.add(call.job_id)
    starts = []
    for job in in_order(waiting):
        if job.job_id in placed:
            continue  # its call is in flight already (or the job was listed twice)
        if job.not_before > now or job.number in numbers_in_use:
            continue
        line = _freest(job.lines, channels, in_use)
        if line is None:
            continue  # its lines are full, or the policy (or a host that is down) has none
        if is_quiet(job.number, quiet, now):
            continue
        starts.append(Start(job.job_id, job.number, line, job.attempts + 1, job.fallback))
        in_use[line] += 1
        numbers_in_use.add(job.number)
        placed.add(job.job_id)
    return starts


def _freest(lines: Sequence[str], channels: dict[str, int], in_use: Counter[str]) -> str | None:
    """Of the lines that may carry the call, the one with the most free channels (the first
    on a tie): calls spread over the hosts that share numbers. None when all are full."""
    best, most_free = None, 0
    for line in lines:
        free = channels.get(line, 0) - in_use[line]
        if free > most_free:
            best, most_free = line, free
    return best


def next_due(
    waiting: Iterable[WaitingJob], now: datetime, quiet: Sequence[QuietWindow] = ()
) -> datetime | None:
    """The earliest moment after `now` at which a job held back by time alone (its not-before,
    or quiet hours) may start; None when none is. The dispatcher's timer."""
    due = []
    for job in waiting:
        start = quiet_until(job.number, quiet, max(job.not_before, now))
        if start > now:
            due.append(start)
    return min(due, default=None)
