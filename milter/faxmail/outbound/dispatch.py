"""The dispatcher's steps: place the calls faxmail's queue says to start now, exactly once.

Each call is one attempt (MaxRetries 0): the queue (faxmail.queue.schedule.plan) decides which
waiting job's call starts, and the end of a call (notify) decides the next one. Placing call
`n` of a job, in this order, so that a kill -9 between any two steps neither dials twice nor
loses the job:
  1. stage the call file whole in faxmail-staging/ ("dispatch-staged");
  2. claim round n in the store: waiting → placed by this host, with a lease ("dispatch-claimed");
  3. rename it into outgoing/: Asterisk dials it ("dispatch-published").
Each line names the Asterisk that dials it (asterisk/dialer.py): for a remote one, step 1
checks the AMI Originate and step 3 sends it. A host that cannot take the call (AMI connect,
login or Originate fails) gets the claim back and is left out for its down_for_s: the same
numbers' lines on other hosts take its calls.
`repair()` (at start, before the first plan) settles each leftover: a staged file whose round is
not claimed is removed (the job still waits and is placed anew); one whose round is claimed is
renamed into outgoing/ (the claim promised that call); a claimed round without a staged file
is Asterisk's (outgoing/ or outgoing_done/): notify reports its end.
The loop that runs these steps is daemon/dispatchloop.py; nothing here sleeps or waits.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from faxmail.asterisk.dialer import CallFileDialer, Dialer, DialError, StagedCall
from faxmail.asterisk.spool import (
    CALLFILES,
    Spool,
    attempt_callfile,
    callfile_round,
    publish,
)
from faxmail.core.asteriskhosts import LOCAL
from faxmail.core.crashpoints import crash_point
from faxmail.core.policy import Policy
from faxmail.core.queuepolicy import Fallback
from faxmail.queue.lines import line_for, lines_for, lines_of
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
    first, *others = lines_for(job.number_e164, policy)
    return WaitingJob(
        job_id=job.id,
        number=job.number_e164,
        line=first,
        alternatives=tuple(others),
        not_before=_moment(row.not_before),
        attempts=row.round - 1,
        enqueued_at=_moment(job.created),
        fallback=Fallback.model_validate(row.fallback) if row.fallback else None,
    )


@dataclass
class Dispatcher:
    """Places calls for one host from one job store, each on the Asterisk its line names
    (`dialers` by host name; default: this host's spool only)."""

    spool: Spool
    store: JobStore
    policy: Callable[[], Policy]
    host: str = field(default_factory=socket.gethostname)
    clock: Callable[[], datetime] = utc_now
    dialers: Mapping[str, Dialer] = field(default_factory=dict)
    # Asterisk hosts that failed, left out until then; the line each placed call is on.
    down_until: dict[str, datetime] = field(default_factory=dict)
    placed_on: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.dialers:
            self.dialers = {LOCAL: CallFileDialer(self.spool)}

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
                # The line the store has it on: another host's call holds a channel there,
                # not on the first line for its number (two lines for the same numbers on
                # two Asterisk hosts would otherwise leave a free channel unused).
                line = row.line or self.placed_on.get(job.id) or line_for(job.number_e164, policy)
                started = _moment(row.claimed or row.not_before)
                in_flight.append(CallInFlight(job.id, job.number_e164, line, started))
        for gone in set(self.placed_on) - {call.job_id for call in in_flight}:
            del self.placed_on[gone]
        return waiting, in_flight, jobs

    def hosts_down(self) -> set[str]:
        now = self.clock()
        for host, until in list(self.down_until.items()):
            if until <= now:
                del self.down_until[host]
                log.info("asterisk host %s: its lines take calls again", host)
        return set(self.down_until)

    def tick(self, only: str | None = None) -> datetime | None:
        """Place every call the queue says to start now (with `only`, that job's call only, if
        it may start); return when time alone may let the next waiting job start (None:
        nothing waits for time). A host found down while placing is left out, and the queue
        planned again at once: its calls go to the other hosts' lines for the same numbers."""
        policy = self.policy()
        for _ in range(len(self.dialers) + 1):
            down = self.hosts_down()
            waiting, in_flight, jobs = self.queue(policy)
            now = self.clock()
            starts = plan(waiting, in_flight, lines_of(policy, down), now, policy.quiet_hours)
            for start in starts:
                if only is None or start.job_id == only:
                    self.place(start, jobs[start.job_id], policy)
            if not set(self.down_until) - down:
                break
        started = {start.job_id for start in starts}
        later = [job for job in waiting if job.job_id not in started]
        return next_due(later, now, policy.quiet_hours)

    def place(self, start: Start, job: Job, policy: Policy) -> bool:
        """Stage, claim, dial one call (see the module's docstring); True once handed over."""
        line = next(line for line in policy.dial_lines() if line.name == start.line)
        dialer = self.dialers.get(line.host)
        if dialer is None:
            log.error(
                "job %s: line %s names host %r (lines[].host), not in the settings' "
                "asterisk_hosts: not dialled",
                job.id,
                line.name,
                line.host,
            )
            return False
        try:
            staged = dialer.stage(
                job.id,
                start.attempt,
                attempt_callfile(
                    job,
                    policy.fax,
                    channel=line.channel,
                    round_=start.attempt,
                    fallback=start.fallback,
                ),
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
            dialer.discard(staged)
            return False
        crash_point("dispatch-claimed")
        try:
            dialer.dial(staged)
        except DialError as exc:
            return self._not_dialled(dialer, staged, line.name, exc)
        crash_point("dispatch-published")
        self.placed_on[job.id] = line.name
        log.info(
            "dialling job=%s call=%d line=%s number=%s%s%s",
            job.id,
            start.attempt,
            start.line,
            job.number_dialled,
            f" fallback={start.fallback.describe()!r}" if start.fallback else "",
            "" if line.host == LOCAL else f" host={line.host}",
        )
        return True

    def _not_dialled(self, dialer: Dialer, staged: StagedCall, line: str, exc: DialError) -> bool:
        job_id, round_ = staged.job_id, staged.round
        if exc.host_down:
            until = self.clock() + timedelta(seconds=dialer.down_for_s)
            self.down_until[dialer.host] = until
            log.warning(
                "asterisk host %s down for %g s (its calls go to other hosts' lines): %s",
                dialer.host,
                dialer.down_for_s,
                exc,
            )
        if exc.maybe_placed:
            # Sent, not confirmed: it may ring. Giving it back could dial it twice; notify's
            # report, or the claim's lease, settles it.
            log.error(
                "job %s: call %d sent to host %s without a confirmation; kept as placed",
                job_id,
                round_,
                dialer.host,
            )
            self.placed_on[job_id] = line  # it holds that line's channel until settled
            return False
        log.error("job %s: cannot queue call %d (tried again later): %s", job_id, round_, exc)
        self._give_back(job_id, round_, partial(dialer.discard, staged), exc)
        return False

    def _give_back(
        self, job_id: str, round_: int, discard: Callable[[], None], exc: Exception
    ) -> None:
        try:
            self.store.release_call(job_id, round_, error=str(exc))
        except StoreUnavailable as error:
            # The claim stays: repair() at the next start publishes the staged file.
            log.error("job %s: cannot give call %d back yet: %s", job_id, round_, error)
            return
        discard()

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
                    self._give_back(job_id, round_, partial(staged.unlink, missing_ok=True), exc)
                continue
            log.warning("job %s: claimed call %d queued after a crash", job_id, round_)
