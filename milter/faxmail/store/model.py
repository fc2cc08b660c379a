"""The job model: what the job store holds, as typed values shared by every implementation.

The enums' values are the strings in the database, the admin's output and the logs: renaming a
member is free, changing a value changes the stored data and needs a migration.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class JobState(StrEnum):
    """Where a job is; the order is the order `faxmail jobs --state` lists them in."""

    QUEUEING = "queueing"  # between its row and its call file; start-up repair settles it
    QUEUED = "queued"  # its call file is in Asterisk's queue
    SENDING = "sending"  # a call was answered, the fax is going
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by the admin (`faxmail cancel`)
    ABANDONED = "abandoned"  # never reached Asterisk: a local fault, the sender got a 4xx
    PREVIEWED = "previewed"  # fax+preview+<number>: the pages were mailed back, never dialled


# Jobs that can absorb a resent mail: every job that was or will be a call. Cancelled and
# abandoned jobs were never faxed.
COUNTED_STATES = (
    JobState.QUEUEING,
    JobState.QUEUED,
    JobState.SENDING,
    JobState.SENT,
    JobState.FAILED,
)

# Jobs that count against the sender's rate limits: the calls, and each previewed number (a
# preview renders like a fax, so it costs like one). A preview never absorbs a resent mail and
# is never absorbed: it is not a fax, and a real fax of the same mail must still be dialled.
RATE_COUNTED_STATES = (*COUNTED_STATES, JobState.PREVIEWED)

# The final states: each comes with the job's one result mail.
FINISHED_STATES = (JobState.SENT, JobState.FAILED, JobState.CANCELLED)


class AttemptOutcome(StrEnum):
    """What one call attempt came to, as faxmail-notify heard it from the dialplan."""

    ANSWERED = "answered"  # the fax begins; its outcome follows as success or failed
    UNANSWERED = "unanswered"  # busy, no answer, congestion
    SUCCESS = "success"
    FAILED = "failed"


class EventKind(StrEnum):
    """The kinds of a job's history rows (table events)."""

    ACCEPTED = "accepted"  # the milter admitted the job
    PREVIEWED = "previewed"  # the milter admitted a preview: pages mailed back, no call
    DUPLICATE = "duplicate"  # the same mail came again and was not faxed twice
    SPOOLED = "spooled"  # its call file went to Asterisk
    SPOOL_ERROR = "spool-error"  # a local fault while queueing: abandoned
    REPAIRED = "repaired"  # settled by the milter's start-up repair after a crash
    ATTEMPT_ANSWERED = "attempt-answered"
    ATTEMPT_UNANSWERED = "attempt-unanswered"
    ATTEMPT_SUCCESS = "attempt-success"
    ATTEMPT_FAILED = "attempt-failed"
    REQUEUED = "requeued"  # the next call waits in faxmail's queue (a retry), the next round
    DIALLING = "dialling"  # a dispatcher claimed the round and hands its call file to Asterisk
    UNDIALLED = "undialled"  # that claim given back: the call file never reached Asterisk
    # failed: the placed call's lease ran out without a report (its host died mid-call); the
    # fax may or may not have gone through, and is never dialled again
    LEASE_EXPIRED = "lease-expired"
    FAX_SENT = "fax-sent"
    FAX_FAILED = "fax-failed"
    UNANSWERED = "unanswered"  # failed: no attempt was answered
    NO_REPORT = "no-report"  # failed: Asterisk archived the call without a fax report
    CANCELLED = "cancelled"
    RESULT_ALREADY_CLAIMED = "result-already-claimed"  # a late or repeated report
    RESULT_MAILED = "result-mailed"
    RESEND_OF = "resend-of"  # on a job `faxmail resend` made: the job it repeats
    RESENT = "resent"  # on the job that was resent: the new job

    @classmethod
    def of_attempt(cls, outcome: AttemptOutcome) -> EventKind:
        return cls(f"attempt-{outcome}")


@dataclass(frozen=True)
class Job:
    id: str
    created: float
    state: JobState
    sender: str  # rate-limit key: the authenticated From, lower case
    envelope_sender: str
    author: str
    reply_to: str | None
    subject: str
    number_given: str
    number_e164: str
    number_dialled: str
    pages: int
    digest: str
    message_id: str
    proof: str
    dkim_domain: str | None
    language: str
    tiff: str
    render_seconds: float
    tiff_bytes: int


@dataclass(frozen=True)
class Attempt:
    round: int  # 1 + fax-level retries queued before this call
    attempt: int  # Asterisk's AST_OUTGOING_ATTEMPT within the round
    at: float
    outcome: AttemptOutcome
    detail: dict[str, object]  # reason, status, error, pages, bitrate, station...


@dataclass(frozen=True)
class DispatchRow:
    """A job's place in faxmail's outbound queue: its next call, waiting or placed."""

    job_id: str
    round: int  # the number of the call: 1 for the first
    not_before: float  # no call before this
    fallback: dict[str, object] | None  # what this call changes (queuepolicy.Fallback's keys)
    host: str | None  # None: waiting; else the dispatcher that placed the call
    lease_until: float | None
    claimed: float | None
    line: str | None = None  # the line the placed call holds (whichever host placed it)


@dataclass(frozen=True)
class RateLimits:
    per_hour: int | None
    per_day: int | None


Window = Literal["hour", "day"]


@dataclass(frozen=True)
class RateExceeded:
    count: int
    window: Window


@dataclass(frozen=True)
class Duplicate:
    job_id: str  # the earlier job the resent mail is a copy of


Admission = Literal["admitted"] | RateExceeded | Duplicate


# --- what the admin commands read ------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    states: tuple[JobState, ...] = ()  # any of these ...
    duplicates: bool = False  # ... or a job that absorbed a resent mail
    sender: str | None = None  # "alice@example.jp" (exact) or "@example.jp" (that domain)
    number_e164: str | None = None  # exact
    number_digits: str | None = None  # a part of the dialled digits
    since: float | None = None
    limit: int | None = None  # None: all


@dataclass(frozen=True)
class Result:
    """A job's one result mail: claimed with its final state, delivered once handed over."""

    outcome: JobState  # sent / failed / cancelled
    claimed: float
    delivered: float | None


@dataclass(frozen=True)
class Event:
    at: float
    kind: EventKind
    detail: dict[str, Any]


@dataclass(frozen=True)
class Inbound:
    """A received fax, for the record."""

    id: str
    received: float
    detail: dict[str, Any]  # did, caller, status, pages, recipients...
    delivered: float | None
