"""What the callers of the job store depend on: one protocol per kind of caller.

- `JobStore`: the milter's decision (rate limits, admission, queueing, start-up repair).
- `NotifyStore`: faxmail-notify (attempts, rounds, the one result mail per job, received faxes).
- `JobQueries`: the admin commands' read questions, as named methods.
- `AdminStore`: what the admin commands hold: notify's store (cancel sends the result mail,
  resend queues through the milter's enqueue) and its queries.

No SQL crosses these protocols, and no driver's exception: both implementations, `sqlite.py`
(the embedded default) and `postgres.py` (several hosts on one database), raise
`errors.StoreUnavailable` for a temporary fault. Values are those of `model.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from faxmail.store.model import (
    Admission,
    Attempt,
    AttemptOutcome,
    DispatchRow,
    Event,
    EventKind,
    Inbound,
    Job,
    JobFilter,
    JobState,
    RateExceeded,
    RateLimits,
    Result,
)


class MessageIdClaims(Protocol):
    def claim_message_id(self, message_id: str, transaction: str, now: float) -> bool: ...
    def release_message_id(self, message_id: str, transaction: str) -> None: ...
    def message_id_claimed(self, message_id: str) -> bool: ...


class DispatchListener(Protocol):
    """A dispatcher's ear for other hosts: readable (`fileno`) once another host announced
    that the queue changed (a job queued, a call over, a claim given back or expired)."""

    def fileno(self) -> int: ...

    def drain(self) -> int:
        """Consume the announcements received so far (how many; several are one wake).
        StoreUnavailable: the connection broke (close it, open another later)."""
        ...

    def close(self) -> None: ...


class DispatchStore(Protocol):
    """faxmail's outbound queue: enqueue puts a job in, dispatchers claim its calls."""

    def dispatch_listener(self) -> DispatchListener | None:
        """A new listener for the queue's changes made by any host; None for a store of one
        host (SQLite: its dispatcher's wake socket hears them all). StoreUnavailable: not now.
        """
        ...

    def queue_job(self, job_id: str, not_before: float, **detail: object) -> None:
        """State "queued" and the first call waiting, in one step."""
        ...

    def dispatch_rows(self, *, claimed: bool | None = None) -> list[DispatchRow]:
        """Open jobs' queue rows, oldest job first; only placed (True) or waiting (False)."""
        ...

    def dispatch_row(self, job_id: str) -> DispatchRow | None: ...

    def claim_call(
        self,
        job_id: str,
        round_: int,
        host: str,
        lease_until: float,
        *,
        number: str,
        line: str,
        channels: int,
    ) -> bool:
        """Claim a waiting call for `host`, on `line`; False when another has it, it waits no
        more, `line` carries `channels` placed calls already or `number` (E.164) has one:
        whatever another host placed meanwhile, the limits hold at claim time."""
        ...

    def expire_claims(self, now: float) -> list[str]:
        """Settle placed calls whose lease ran out before `now` without a report: each job
        fails (its result claimed; the call may have happened, so it is never placed again).
        The ids of the jobs settled."""
        ...

    def release_call(self, job_id: str, round_: int, **detail: object) -> None:
        """Give a claim back: its call file never reached Asterisk."""
        ...

    def cancel_waiting(self, job_id: str, event: EventKind, **detail: object) -> bool:
        """Cancel a job whose call waits in faxmail's queue, claiming its result, in one
        step; False when none waits (placed meanwhile, or over)."""
        ...


class DocumentStore(Protocol):
    """Queued faxes' TIFFs, for Asterisk hosts that share no files with the milter's."""

    def put_document(self, job_id: str, tiff: bytes) -> None: ...

    def document(self, job_id: str) -> bytes | None: ...


class JobStore(MessageIdClaims, DispatchStore, DocumentStore, Protocol):
    def rate_exceeded(self, sender: str, limits: RateLimits, now: float) -> RateExceeded | None:
        """Whether `sender` (any case) is at one of `limits` at `now`."""
        ...

    def admit(self, job: Job, limits: RateLimits, duplicate_window_s: float) -> Admission:
        """Insert `job` as queueing unless it is a resent duplicate or over the rate limit;
        the check and the insert are atomic, whoever else admits at the same time. A job in
        state previewed (a preview: counted, never dialled) skips the duplicate check."""
        ...

    def set_state(
        self, job_id: str, state: JobState, event: EventKind, **detail: object
    ) -> None: ...

    def add_event(self, job_id: str, event: EventKind, **detail: object) -> None: ...

    def get(self, job_id: str) -> Job | None: ...

    def in_state(self, state: JobState) -> list[Job]:
        """Newest first."""
        ...

    def events(self, job_id: str) -> list[tuple[float, EventKind, dict[str, object]]]:
        """The job's history, oldest first: (at, kind, detail)."""
        ...

    def close(self) -> None: ...


class NotifyStore(JobStore, Protocol):
    @property
    def location(self) -> str:
        """Where the store is, for messages (a file's path, a database's name)."""
        ...

    def record_attempt(
        self,
        job_id: str,
        round_: int,
        attempt: int,
        outcome: AttemptOutcome,
        state: JobState | None = None,
        **detail: object,
    ) -> None:
        """One call's outcome, as an attempt and an event; `state`: the job's new state."""
        ...

    def attempts(self, job_id: str) -> list[Attempt]:
        """Oldest first."""
        ...

    def current_round(self, job_id: str) -> int:
        """1 for the milter's call file, +1 for each fax-level retry queued since."""
        ...

    def claim_requeue(
        self,
        job_id: str,
        after_round: int,
        *,
        not_before: float | None = None,
        fallback: dict[str, object] | None = None,
        **detail: object,
    ) -> bool:
        """Claim the retry after `after_round` (state back to queued; with `not_before`, the
        next call waits in faxmail's queue); False when it was claimed already or the job has
        its result: then queue no call."""
        ...

    def claim_result(
        self,
        job_id: str,
        outcome: JobState,
        event: EventKind,
        *,
        only_from: tuple[JobState, ...] = (),
        **detail: object,
    ) -> bool:
        """Make `outcome` the job's final state and claim its one result mail, in one step;
        with `only_from`, only from one of those states. False: send nothing."""
        ...

    def result_delivered(self, job_id: str) -> None: ...

    def pending_results(self) -> list[str]:
        """Ids of jobs whose claimed result mail was not handed over yet, oldest claim first."""
        ...

    def add_inbound(self, inbound_id: str, **detail: object) -> None:
        """Record a received fax (once: a repeated call keeps the first record)."""
        ...

    def inbound_delivered(self, inbound_id: str) -> None: ...


class JobQueries(Protocol):
    def jobs(self, wanted: JobFilter) -> list[Job]:
        """Jobs matching `wanted`, newest first."""
        ...

    def ids_starting(self, prefix: str, limit: int = 10) -> list[str]:
        """Job ids that start with `prefix` (hex digits only: the caller checked it)."""
        ...

    def attempts(self, job_ids: Sequence[str]) -> dict[str, list[Attempt]]:
        """Each job's attempts, oldest first (an empty list for a job without any)."""
        ...

    def results(self, job_ids: Sequence[str]) -> dict[str, Result]:
        """The result claims of those jobs that have one."""
        ...

    def events(
        self, job_ids: Sequence[str], kinds: Iterable[EventKind] = ()
    ) -> dict[str, list[Event]]:
        """Each job's events, oldest first; only those of `kinds` when given."""
        ...

    def inbound(self, since: float | None = None, limit: int | None = None) -> list[Inbound]:
        """Received faxes, newest first."""
        ...


class AdminStore(NotifyStore, Protocol):
    @property
    def queries(self) -> JobQueries: ...
