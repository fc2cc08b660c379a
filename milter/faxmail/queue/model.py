"""The queue's typed values: lines, waiting jobs, calls in flight, calls to start, outcomes.

Times are timezone-aware datetimes (a naive one is refused): quiet hours are local times in
the destination's zone, and comparing naive with aware datetimes would only fail later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from faxmail.core.queuepolicy import Fallback


def _aware(what: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, not {moment!r}")


@dataclass(frozen=True)
class Line:
    """A line or trunk as the scheduler sees it: a name and how many calls it carries."""

    name: str
    channels: int

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"line {self.name} needs at least one channel")


@dataclass(frozen=True)
class WaitingJob:
    """A job whose next call has not been placed yet."""

    job_id: str
    number: str  # E.164, "+81312345678": one call per number at a time
    line: str  # the name of the line its calls go out on
    not_before: datetime  # no call before this (a retry's delay, a send-later time)
    attempts: int  # calls placed so far
    enqueued_at: datetime  # first come, first served
    fallback: Fallback | None = None  # what the next call changes (after a failed fax)
    # Other lines (on other Asterisk hosts) that serve the number as well as `line` does.
    alternatives: tuple[str, ...] = ()

    @property
    def lines(self) -> tuple[str, ...]:
        return (self.line, *self.alternatives)

    def __post_init__(self) -> None:
        _aware("not_before", self.not_before)
        _aware("enqueued_at", self.enqueued_at)
        if self.attempts < 0:
            raise ValueError("attempts cannot be negative")


@dataclass(frozen=True)
class CallInFlight:
    """A call placed and not over yet: it holds a channel of its line and its number."""

    job_id: str
    number: str
    line: str
    started: datetime

    def __post_init__(self) -> None:
        _aware("started", self.started)


@dataclass(frozen=True)
class Start:
    """Place this call now."""

    job_id: str
    number: str
    line: str
    attempt: int  # 1 for the first call of the job
    fallback: Fallback | None


class Outcome(StrEnum):
    """How one call ended."""

    SENT = "sent"  # answered, and the fax went through
    BUSY = "busy"  # the far line is on another call
    CONGESTION = "congestion"  # no free circuit on the way
    NO_ANSWER = "no-answer"  # rang out, or hung up before answering
    DIAL_FAILED = "dial-failed"  # the call could not be placed (a trunk down, no route)
    FAX_FAILED = "fax-failed"  # answered, but the fax exchange (T.30) failed
    LOCAL_ERROR = "local-error"  # our own fax file could not be sent: no call can cure it
    CANCELLED = "cancelled"  # taken back by the admin

    @property
    def ends_job(self) -> bool:
        """Sent or cancelled: the job is over, there is no next call to decide."""
        return self in (Outcome.SENT, Outcome.CANCELLED)

    @property
    def line_busy(self) -> bool:
        """Busy or congestion: nobody answered because someone else was using the line."""
        return self in (Outcome.BUSY, Outcome.CONGESTION)


# Asterisk's REASON of an unanswered call (the dialplan's `failed` extension): its control
# frame numbers, 1 hangup, 3 ringing, 5 busy, 8 congestion; 0 is "the call failed".
_DIAL_REASONS = {
    "1": Outcome.NO_ANSWER,
    "3": Outcome.NO_ANSWER,
    "5": Outcome.BUSY,
    "8": Outcome.CONGESTION,
}


def unanswered_outcome(reason: str | None) -> Outcome:
    """The outcome of an unanswered call by Asterisk's REASON; anything unknown failed."""
    return _DIAL_REASONS.get((reason or "").strip(), Outcome.DIAL_FAILED)


def answered_outcome(status: str, error: str) -> Outcome:
    """The outcome of an answered call by FAXSTATUS and FAXERROR."""
    if status.strip().upper() == "SUCCESS":
        return Outcome.SENT
    if error.strip().upper() == "FILE_ERROR":
        return Outcome.LOCAL_ERROR
    return Outcome.FAX_FAILED


@dataclass(frozen=True)
class AttemptRecord:
    """One call of a job, for the next retry decision and the result mail's history."""

    attempt: int  # 1, 2, ...
    outcome: Outcome
    fallback: Fallback | None  # what this call changed, None: the dialplan's settings
    ended: datetime

    def __post_init__(self) -> None:
        _aware("ended", self.ended)

    def describe(self) -> str:
        """One line of an attempt history: "attempt 2: fax-failed (ECM off)"."""
        changed = f" ({self.fallback.describe()})" if self.fallback else ""
        return f"attempt {self.attempt}: {self.outcome}{changed}"


@dataclass(frozen=True)
class History:
    """A job's calls so far, oldest first."""

    attempts: tuple[AttemptRecord, ...] = ()

    def then(self, record: AttemptRecord) -> History:
        return History((*self.attempts, record))

    def count(self, *outcomes: Outcome) -> int:
        return sum(1 for a in self.attempts if a.outcome in outcomes)
