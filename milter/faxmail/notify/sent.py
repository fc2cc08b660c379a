"""Outbound fax events from the send context: record each attempt, decide when the job is over.

Asterisk tells us about a job in pieces (see asterisk/extensions.conf):
- `failed` runs on every unanswered attempt (busy, no answer, congestion) with
  AST_OUTGOING_ATTEMPT; the call file allows fax.max_retries + 1 of them. Only the last one is
  final. Its `h` extension runs afterwards with an empty FAXSTATUS: the dialplan skips it, and
  so do we if it comes anyway.
- the answered call's `h` extension reports the fax: SUCCESS or FAILED (FAXERROR says why).
  Asterisk never redials an answered call; notify.fax_retries may queue another call file.

The job's one result mail is claimed in the store together with its final state (claim_result),
so a repeated or late call cannot send a second mail or queue a second retry.
"""

from __future__ import annotations

import logging
from pathlib import Path

from faxmail.notify.args import FaxReport
from faxmail.notify.environment import Context
from faxmail.notify.requeue import requeue
from faxmail.notify.results import spool_result
from faxmail.store.model import Attempt, AttemptOutcome, EventKind, Job, JobState

log = logging.getLogger("faxmail_notify.sent")

# Fax errors a new call cannot cure: our own file is broken.
_NOT_RETRIED = frozenset({"FILE_ERROR"})


class UnknownJob(Exception):
    """No such job in the store (exit 66, EX_NOINPUT)."""


def _job(ctx: Context, job_id: str) -> Job:
    job = ctx.store.get(job_id)
    if job is None:
        raise UnknownJob(f"job {job_id} is not in the store {ctx.store.location}")
    return job


def _round(ctx: Context, job: Job, given: int | None) -> tuple[int, list[Attempt]] | None:
    """The call this report is about and its attempts so far; None for a stale report.

    The milter's call file is call 1 (no FAXMAIL_ROUND); each fax-level retry's call file
    says its number. A report about an earlier call than the current one comes late or twice:
    it was handled when it was current.
    """
    current = ctx.store.current_round(job.id)
    round_ = given or 1
    if round_ < current:
        log.info(
            "job %s: report about call %d, but call %d is current: ignored", job.id, round_, current
        )
        return None
    return round_, [a for a in ctx.store.attempts(job.id) if a.round == round_]


def on_answered(ctx: Context, job_id: str, round_: int | None, attempt: int | None) -> None:
    """The send extension started: the call was answered, the fax begins (state "sending")."""
    job = _job(ctx, job_id)
    found = _round(ctx, job, round_)
    if found is None:
        return
    number, earlier = found
    attempt = attempt or max((a.attempt for a in earlier), default=0) + 1
    state = JobState.SENDING if job.state in (JobState.QUEUED, JobState.SENDING) else None
    ctx.store.record_attempt(job.id, number, attempt, AttemptOutcome.ANSWERED, state=state)


def on_unanswered(
    ctx: Context, job_id: str, round_: int | None, attempt: int, reason: str | None
) -> str | None:
    """One unanswered attempt; the result entry's name if it was the last one."""
    job = _job(ctx, job_id)
    found = _round(ctx, job, round_)
    if found is None:
        return None
    number, _ = found
    final = attempt >= ctx.policy.fax.max_retries + 1
    ctx.store.record_attempt(
        job.id, number, attempt, AttemptOutcome.UNANSWERED, reason=reason, final=final
    )
    if not final:
        log.info("job %s: attempt %d not answered (REASON %s)", job.id, attempt, reason)
        return None
    if not ctx.store.claim_result(
        job.id, JobState.FAILED, EventKind.UNANSWERED, attempts=attempt, reason=reason
    ):
        return None
    log.info("job %s: failed, %d attempts not answered", job.id, attempt)
    return spool_result(ctx, job.id)


def on_sent(
    ctx: Context, job_id: str, round_: int | None, attempt: int | None, report: FaxReport
) -> str | None:
    """The answered call is over; the result entry's name if the job is over."""
    job = _job(ctx, job_id)
    found = _round(ctx, job, round_)
    if found is None:
        return None
    number, earlier = found
    if not report.status and earlier and earlier[-1].outcome == AttemptOutcome.UNANSWERED:
        # The `h` extension of an unanswered attempt's channel: `failed` has reported it.
        log.info("job %s: h extension after an unanswered attempt; nothing to do", job.id)
        return None
    if attempt is None:
        answered = [a.attempt for a in earlier if a.outcome == AttemptOutcome.ANSWERED]
        attempt = answered[-1] if answered else max((a.attempt for a in earlier), default=0) + 1
    success = report.status == "SUCCESS"
    outcome = AttemptOutcome.SUCCESS if success else AttemptOutcome.FAILED
    ctx.store.record_attempt(job.id, number, attempt, outcome, None, **report.detail())
    if success:
        if not ctx.store.claim_result(
            job.id, JobState.SENT, EventKind.FAX_SENT, pages=report.pages
        ):
            return None
        log.info("job %s: sent, %s pages", job.id, report.pages)
        return spool_result(ctx, job.id)
    if _retry_wanted(ctx, job, number, report):
        if not ctx.store.claim_requeue(job.id, number, error=report.error):
            return None  # this failure was handled already (a repeated call)
        try:
            requeue(ctx, job, number + 1)
            return None
        except (OSError, ValueError) as exc:
            log.error("job %s: cannot queue the fax-level retry: %s", job.id, exc)
    if not ctx.store.claim_result(
        job.id, JobState.FAILED, EventKind.FAX_FAILED, error=report.error
    ):
        return None
    log.info("job %s: fax failed: %s %s", job.id, report.error, report.status_string)
    return spool_result(ctx, job.id)


def _retry_wanted(ctx: Context, job: Job, round_: int, report: FaxReport) -> bool:
    if round_ > ctx.policy.notify.fax_retries:
        return False
    if report.error.strip().upper() in _NOT_RETRIED:
        return False
    return Path(job.tiff).is_file()
