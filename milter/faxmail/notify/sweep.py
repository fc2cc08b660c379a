"""Jobs Asterisk is done with but never reported on: give them their one result mail.

notify decides "last unanswered attempt" by the policy's fax.max_retries; a job queued before
the admin raised it would wait for an attempt that never comes. And a call that Asterisk ended
without running the `h` extension (a crash, a restart mid-call) reports nothing at all.
Asterisk's archive tells: with `Archive: yes` the call file lands in outgoing_done/ with a
final `Status:` — Expired (no attempt answered) or Completed (answered). `faxmail-notify retry`
looks there for jobs still waiting, once the file is older than GRACE_S, so that a report
still on its way (the last `failed` or `h` runs right after the archive) comes first.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from faxmail.asterisk.callfile import parse_callfile
from faxmail.asterisk.spool import Spool
from faxmail.notify.environment import Context
from faxmail.notify.results import spool_result
from faxmail.outbound.enqueue import stale_admission
from faxmail.store.model import FINISHED_STATES, EventKind, JobState

log = logging.getLogger("faxmail_notify.sweep")

GRACE_S = 600.0


def sweep_archived(ctx: Context, now: float | None = None) -> int:
    """Claim the result of waiting jobs whose call Asterisk archived; return how many."""
    now = time.time() if now is None else now
    spool = Spool.from_settings(ctx.settings.asterisk)
    if not spool.done.is_dir():
        return 0
    settled = 0
    for state in (JobState.QUEUED, JobState.SENDING):
        for job in ctx.store.in_state(state):
            round_ = ctx.store.current_round(job.id)
            try:
                archived = spool.archived_callfile(job.id, round_)
                if now - archived.stat().st_mtime < GRACE_S:
                    continue
                status = dict(parse_callfile(archived.read_bytes())).get("Status", "")
            except OSError:
                continue  # not archived (yet): Asterisk is still working on it
            if status not in ("Expired", "Completed"):
                continue
            # Expired: no attempt was answered. Completed without a report: the call was
            # answered, but what became of the fax nobody knows — so it was not sent.
            event = EventKind.UNANSWERED if status == "Expired" else EventKind.NO_REPORT
            if ctx.store.claim_result(job.id, JobState.FAILED, event, archived_status=status):
                log.warning("job %s: call archived as %s without a final report", job.id, status)
                spool_result(ctx, job.id)
                settled += 1
    return settled


def expire_leases(ctx: Context, now: float | None = None) -> int:
    """Settle the calls whose dispatcher's lease ran out without a report (its host died, or
    lost the store, during the call): each job fails with a result mail saying the outcome is
    unknown. The call is never placed again: it may have gone through. Returns how many."""
    expired = ctx.store.expire_claims(time.time() if now is None else now)
    for job_id in expired:
        log.warning("job %s: its call's lease expired without a report; outcome unknown", job_id)
        spool_result(ctx, job_id)
    return len(expired)


def settle_stale_admissions(ctx: Context, now: float | None = None) -> int:
    """On a store shared by several hosts: abandon the "queueing" rows a crashed milter left
    (its sender got no 250 and retries), which the other hosts' start-up repair leaves alone
    while they are young. The TIFF goes too where it is on this host. Returns how many."""
    if ctx.settings.store.url is None:
        return 0  # one host: the milter's own start-up repair settles them
    now = time.time() if now is None else now
    settled = 0
    for job in ctx.store.in_state(JobState.QUEUEING):
        if stale_admission(job, now):
            Path(job.tiff).unlink(missing_ok=True)
            ctx.store.set_state(job.id, JobState.ABANDONED, EventKind.REPAIRED)
            log.warning("job %s: left queueing by a crash; abandoned (sender got no 250)", job.id)
            settled += 1
    return settled


def prune_sent_tiffs(ctx: Context, now: float | None = None) -> int:
    """Delete the TIFFs of jobs that ended more than notify.keep_sent_tiff_days ago.

    Kept until then so that `faxmail resend` can send the same pages again. Measured from the
    job's creation: a job ends within hours of it (RetryTime x MaxRetries).
    """
    days = ctx.policy.notify.keep_sent_tiff_days
    if days == 0:
        return 0  # deleted with the result mail already
    cutoff = (time.time() if now is None else now) - days * 86400
    pruned = 0
    for state in FINISHED_STATES:
        for job in ctx.store.in_state(state):
            tiff = Path(job.tiff)
            if job.created < cutoff and tiff.is_file():
                tiff.unlink(missing_ok=True)
                pruned += 1
    if pruned:
        log.info("deleted %d sent fax TIFFs older than %g days", pruned, days)
    return pruned
