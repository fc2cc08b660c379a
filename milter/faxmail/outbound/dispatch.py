"""The dispatcher's steps: place the calls faxmail's queue says to start now, exactly once.

Each call is one attempt (MaxRetries 0): the queue (faxmail.queue.schedule.plan) decides which
waiting job's call starts, and the end of a call (notify) decides the next one. Placing call
`n` of a job, in this order, so that a kill -9 between any two steps neither dials twice nor
loses the job:
  1. stage the call file whole in faxmail-staging/ ("dispatch-staged");
  2. claim round n in the store: waiting → placed by this host, with a lease ("dispatch-claimed");
  3. rename it into outgoing/: Asterisk dials it ("dispatch-published").
`repair()` (at start, before the first plan) settles each leftover: a staged file whose round is
not claimed is removed (the job still waits and is placed anew); one whose round is claimed is
renamed into outgoing/ (the claim promised that call); a claimed round without a staged file
is Asterisk's (outgoing/ or outgoing_done/): notify reports its end.
The loop that runs these steps is daemon/dispatchloop.py; nothing here sleeps or waits.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from faxmail.asterisk.callfile import render_callfile
from faxmail.asterisk.spool import (
    CALLFILES,
    Spool,
    attempt_callfile,
    callfile_name,
    callfile_round,
    publish,
    spool_callfile,
)
from faxmail.core.crashpoints import crash_point
from faxmail.core.policy import Policy
from faxmail.core.queuepolicy import Fallback
from faxmail.queue.lines import line_for, lines_of
from faxmail.queue.model import CallInFlight, Start, WaitingJob
from faxmail.queue.schedule import next_due, plan
from faxmail.store.errors import StoreUnavailable
from faxmail.store.interface import JobStore
from faxmail.store.model import DispatchRow, Job, JobState

log = logging.getLogger("faxmail.dispatch")

# How long a placed call's claim holds without a report. With one dispatcher per store it is
# never taken over; it is there for several hosts sharing one store (a dead host's claims).
LEASE_S = 3600.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def _moment(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def waiting_job(row: DispatchRow, job: Job, policy: Policy) -> WaitingJob:
    return WaitingJob(
        job_id=job.id,
        number=job.number_e164,
        line=line_for(job.number_e164, policy),
        not_before=_moment(row.not_before),
        attempts=row.round - 1,
        enqueued_at=_moment(job.created),
        fallback=Fallback.model_validate(row.fallback) if row.fallback else None,
    )


@dataclass
class Dispatcher:
    """Places calls for one host from one job store into one Asterisk spool."""

    spool: Spool
    store: JobStore
    policy: Callable[[], Policy]
    host: str = field(default_factory=socket.gethostname)
    clock: Callable[[], datetime] = utc_now

    def queue(self, policy: Policy) -> tuple[list[WaitingJob], list[CallInFlight], dict[str, Job]]:
        """The waiting jobs and the calls in flight, as the store has them now."""
        waiting, in_flight, jobs = [], [], {}
        for row in self.store.dispatch_rows():
            job = self.store.get(row.job_id)
            if job is None:
                continue
            jobs[job.id] = job
            if row.host is None:
                waiting.append(waiting_job(row, job, policy))
            else:
                line = line_for(job.number_e164, policy)
                started = _moment(row.claimed or row.not_before)
                in_flight.append(CallInFlight(job.id, job.number_e164, line, started))
        return waiting, in_flight, jobs

    def tick(self, only: str | None = None) -> datetime | None:
        """Place every call the queue says to start now (with `only`, that job's call only, if
        it may start); return when time alone may let the next waiting job start (None:
        nothing waits for time)."""
        policy = self.policy()
        waiting, in_flight, jobs = self.queue(policy)
        now = self.clock()
        starts = plan(waiting, in_flight, lines_of(policy), now, policy.quiet_hours)
        for start in starts:
            if only is None or start.job_id == only:
                self.place(start, jobs[start.job_id], policy)
        started = {start.job_id for start in starts}
        later = [job for job in waiting if job.job_id not in started]
        return next_due(later, now, policy.quiet_hours)

    def place(self, start: Start, job: Job, policy: Policy) -> bool:
        """Stage, claim, publish one call (see the module's docstring); True once published."""
        channel = next(line.channel for line in policy.dial_lines() if line.name == start.line)
        name = callfile_name(job.id, start.attempt)
        try:
            content = render_callfile(
                attempt_callfile(
                    job, policy.fax, channel=channel, round_=start.attempt, fallback=start.fallback
                )
            )
            staged = spool_callfile(
                content,
                staging_dir=self.spool.staging,
                outgoing_dir=self.spool.staging,
                name=name,
                owner=self.spool.owner,
            )
        except (OSError, ValueError) as exc:
            log.error(
                "job %s: cannot stage call %d (tried again later): %s", job.id, start.attempt, exc
            )
            return False
        crash_point("dispatch-staged")
        lease = self.clock().timestamp() + LEASE_S
        channels = next(line.channels for line in policy.dial_lines() if line.name == start.line)
        try:
            # The store checks the line's channels and the number again: another host may
            # have placed a call since this host's plan.
            claimed = self.store.claim_call(
                job.id,
                start.attempt,
                self.host,
                lease,
                number=job.number_e164,
                line=start.line,
                channels=channels,
            )
        except StoreUnavailable as exc:
            log.error(
                "job %s: cannot claim call %d (tried again later): %s", job.id, start.attempt, exc
            )
            claimed = False
        if not claimed:
            staged.unlink(missing_ok=True)
            return False
        crash_point("dispatch-claimed")
        try:
            unsynced = publish(staged, self.spool.queued_callfile(job.id, start.attempt))
        except OSError as exc:
            log.error(
                "job %s: cannot queue call %d (tried again later): %s", job.id, start.attempt, exc
            )
            self._give_back(job.id, start.attempt, staged, exc)
            return False
        if unsynced is not None:
            log.error(
                "job %s: call file queued, but its folder could not be synced: %s", job.id, unsynced
            )
        crash_point("dispatch-published")
        log.info(
            "dialling job=%s call=%d line=%s number=%s%s",
            job.id,
            start.attempt,
            start.line,
            job.number_dialled,
            f" fallback={start.fallback.describe()!r}" if start.fallback else "",
        )
        return True

    def _give_back(self, job_id: str, round_: int, staged: Path, exc: Exception) -> None:
        try:
            self.store.release_call(job_id, round_, error=str(exc))
        except StoreUnavailable as error:
            # The claim stays: repair() at the next start publishes the staged file.
            log.error("job %s: cannot give call %d back yet: %s", job_id, round_, error)
            return
        staged.unlink(missing_ok=True)

    def repair(self) -> None:
        """Settle what a crash left between staging and publishing (at start, before tick)."""
        if not self.spool.staging.is_dir():
            return
        for staged in sorted(self.spool.staging.glob(CALLFILES)):
            named = callfile_round(staged.name)
            row = self.store.dispatch_row(named[0]) if named else None
            job = self.store.get(named[0]) if named else None
            if named is None or job is None:
                continue  # not ours: enqueue's repair removes it with the other leftovers
            job_id, round_ = named
            claimed = row is not None and row.round == round_ and row.host is not None
            # A call file an older version staged for a queued job: it was to be dialled.
            legacy = row is None and round_ == 1 and job.state == JobState.QUEUED
            if not (claimed or legacy):
                staged.unlink(missing_ok=True)
                log.warning(
                    "job %s: unclaimed call %d removed after a crash; it waits", job_id, round_
                )
                continue
            final = self.spool.queued_callfile(job_id, round_)
            if final.exists() or self.spool.archived_callfile(job_id, round_).exists():
                staged.unlink(missing_ok=True)  # published before the crash: Asterisk has it
                continue
            try:
                publish(staged, final)
            except OSError as exc:
                # Never reached Asterisk: the call waits again, placed anew once the spool works.
                log.error("job %s: cannot queue call %d after a crash: %s", job_id, round_, exc)
                if claimed:
                    self._give_back(job_id, round_, staged, exc)
                continue
            log.warning("job %s: claimed call %d queued after a crash", job_id, round_)
