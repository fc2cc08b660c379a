"""Where each waiting job stands in faxmail's outbound queue, for `faxmail jobs` and `show`.

A job waits in its line's queue, first come first served (queue.schedule.in_order): its place
is its rank among the jobs waiting for that line, and its next call is due at its not-before
time, or later while quiet hours hold its number. A due job may still wait for a free channel
or for its number's call in flight to end: then its next call starts when that call ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from faxmail.core.policy import Policy
from faxmail.queue.lines import line_for
from faxmail.queue.model import WaitingJob
from faxmail.queue.quiet import quiet_until
from faxmail.queue.schedule import in_order
from faxmail.store.interface import JobStore


@dataclass(frozen=True)
class QueuePlace:
    line: str
    place: int  # 1: the next job of its line to be called
    waiting: int  # jobs waiting for that line
    next_call: float  # when its next call may start by time alone (not-before, quiet hours)
    call: int  # the number of that call: 1, 2...

    def describe(self, now: float, clock: str) -> str:
        """ "waiting: 2 of 3 on line default, call 2 at 14:05:00" """
        when = "when the line is free" if self.next_call <= now else f"at {clock}"
        return (
            f"waiting: {self.place} of {self.waiting} on line {self.line}, call {self.call} {when}"
        )

    def as_json(self, iso: str | None) -> dict[str, object]:
        return {
            "line": self.line,
            "place": self.place,
            "waiting": self.waiting,
            "next_call": iso,
            "call": self.call,
        }


def queue_places(store: JobStore, policy: Policy, now: datetime) -> dict[str, QueuePlace]:
    """Each waiting job's place in its line's queue (job id → place)."""
    waiting = []
    for row in store.dispatch_rows(claimed=False):
        job = store.get(row.job_id)
        if job is None:
            continue
        waiting.append(
            WaitingJob(
                job_id=job.id,
                number=job.number_e164,
                line=line_for(job.number_e164, policy),
                not_before=datetime.fromtimestamp(row.not_before, UTC),
                attempts=row.round - 1,
                enqueued_at=datetime.fromtimestamp(job.created, UTC),
            )
        )
    places: dict[str, QueuePlace] = {}
    ordered = in_order(waiting)
    for entry in ordered:
        same_line = [other for other in ordered if other.line == entry.line]
        due = quiet_until(entry.number, policy.quiet_hours, max(entry.not_before, now))
        places[entry.job_id] = QueuePlace(
            line=entry.line,
            place=same_line.index(entry) + 1,
            waiting=len(same_line),
            next_call=due.timestamp(),
            call=entry.attempts + 1,
        )
    return places
