"""Outbound fax events from the send context: record each call, then decide what comes next.

Asterisk tells us about a job's call in pieces (see asterisk/extensions.conf):
- `failed` runs when the call was not answered (busy, no answer, congestion) with REASON;
- the answered call's `h` extension reports the fax: SUCCESS or FAILED (FAXERROR says why).
Each call faxmail's dispatcher places is one attempt (MaxRetries 0, FAXMAIL_ROUND = its
number), so each report ends a call: then faxmail.queue.retry decides (notify/nextcall.py) —
call again (the job back in faxmail's queue with a not-before time and the fallback for that
call) or give up (the final state and the one result mail). Either way the dispatcher is woken,
so the next call for that line or number starts at once.

A job an older version queued (its call file with MaxRetries, no row in faxmail's queue) is
redialled by Asterisk until its last attempt, as before; its next call, if any, is faxmail's.
The one result mail is claimed in the store together with the final state (claim_result), and
a retry with the round (claim_requeue), so a repeated or late report changes nothing.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from faxmail.notify.args import FaxReport
from faxmail.notify.environment import Context
from faxmail.notify.nextcall import decide, fallback_detail
from faxmail.notify.results import spool_result
from faxmail.outbound.wake import wake
from faxmail.queue.model import Outcome, answered_outcome, unanswered_outcome
from faxmail.queue.retry import GiveUp, GiveUpReason, Retry
from faxmail.store.model import Attempt, AttemptOutcome, EventKind, Job, JobState

log = logging.getLogger("faxmail_notify.sent")


class UnknownJob(Exception):
    """No such job in the store (exit 66, EX_NOINPUT)."""


def _job(ctx: Context, job_id: str) -> Job:
    job = ctx.store.get(job_id)
    if job is None:
        raise UnknownJob(f"job {job_id} is not in the store {ctx.store.location}")
    return job


def _round(ctx: Context, job: Job, given: int | None) -> tuple[int, list[Attempt]] | None:
    """The call this report is about and all the job's attempts so far; None for a stale one.

    A call file without FAXMAIL_ROUND is call 1 (an older version's); every other says its
    number. A report about an earlier call than the current one comes late or twice: it was
    handled when it was current.
    """
    current = ctx.store.current_round(job.id)
    round_ = given or 1
    if round_ < current:
        log.info(
            "job %s: report about call %d, but call %d is current: ignored", job.id, round_, current
        )
        return None
    return round_, ctx.store.attempts(job.id)


def _fallback(ctx: Context, job: Job, round_: int) -> dict[str, object]:
    """The fallback this call used, for the attempt's record (and so the result mail)."""
    row = ctx.store.dispatch_row(job.id)
    if row is None or row.round != round_ or not row.fallback:
        return {}
    return {"fallback": row.fallback}


def on_answered(ctx: Context, job_id: str, round_: int | None, attempt: int | None) -> None:
    """The send extension started: the call was answered, the fax begins (state "sending")."""
    job = _job(ctx, job_id)
    found = _round(ctx, job, round_)
    if found is None:
        return
    number, everything = found
    earlier = [a for a in everything if a.round == number]
    attempt = attempt or max((a.attempt for a in earlier), default=0) + 1
    state = JobState.SENDING if job.state in (JobState.QUEUED, JobState.SENDING) else None
    ctx.store.record_attempt(job.id, number, attempt, AttemptOutcome.ANSWERED, state=state)


def on_unanswered(
    ctx: Context, job_id: str, round_: int | None, attempt: int, reason: str | None
) -> str | None:
    """One unanswered call; the result entry's name if the job is over now."""
    job = _job(ctx, job_id)
    found = _round(ctx, job, round_)
    if found is None:
        return None
    number, before = found
    queued = ctx.store.dispatch_row(job.id) is not None
    # An older version's call file: Asterisk redials it itself until its last attempt.
    final = queued or attempt >= ctx.policy.fax.max_retries + 1
    recorded: dict[str, object] = {"reason": reason, "final": final, **_fallback(ctx, job, number)}
    ctx.store.record_attempt(job.id, number, attempt, AttemptOutcome.UNANSWERED, None, **recorded)
    if not final:
        log.info("job %s: attempt %d not answered (REASON %s)", job.id, attempt, reason)
        return None
    outcome = unanswered_outcome(reason)
    if not queued:
        # Asterisk used the call file's attempts, fax.max_retries + 1: as retry.max_attempts
        # by default. The job ends, as it did before faxmail owned the queue.
        return _give_up(ctx, job, EventKind.UNANSWERED, attempts=attempt, reason=reason)
    unanswered = sum(1 for a in before if a.outcome == AttemptOutcome.UNANSWERED) + 1
    return _next(ctx, job, number, outcome, before, reason=reason, attempts=unanswered)


def on_sent(
    ctx: Context, job_id: str, round_: int | None, attempt: int | None, report: FaxReport
) -> str | None:
    """The answered call is over; the result entry's name if the job is over."""
    job = _job(ctx, job_id)
    found = _round(ctx, job, round_)
    if found is None:
        return None
    number, before = found
    earlier = [a for a in before if a.round == number]
    if not report.status and earlier and earlier[-1].outcome == AttemptOutcome.UNANSWERED:
        # The `h` extension of an unanswered attempt's channel: `failed` has reported it.
        log.info("job %s: h extension after an unanswered attempt; nothing to do", job.id)
        return None
    if attempt is None:
        answered = [a.attempt for a in earlier if a.outcome == AttemptOutcome.ANSWERED]
        attempt = answered[-1] if answered else max((a.attempt for a in earlier), default=0) + 1
    success = report.status == "SUCCESS"
    outcome = AttemptOutcome.SUCCESS if success else AttemptOutcome.FAILED
    fallback = _fallback(ctx, job, number)
    detail: dict[str, object] = {**report.detail(), **fallback}
    ctx.store.record_attempt(job.id, number, attempt, outcome, None, **detail)
    if success:
        if not ctx.store.claim_result(
            job.id, JobState.SENT, EventKind.FAX_SENT, pages=report.pages
        ):
            return None
        log.info("job %s: sent, %s pages", job.id, report.pages)
        _wake(ctx)
        return spool_result(ctx, job.id)
    result = answered_outcome(report.status, report.error)
    return _next(ctx, job, number, result, before, error=report.error, text=report.status_string)


def _fax_kept(ctx: Context, job: Job) -> bool:
    """Whether the next call has its TIFF: the milter's file on its host, or the store's copy
    that a remote Asterisk fetches (notify there never sees the milter's files)."""
    return Path(job.tiff).is_file() or ctx.store.document(job.id) is not None


def _next(
    ctx: Context,
    job: Job,
    round_: int,
    outcome: Outcome,
    before: list[Attempt],
    **detail: object,
) -> str | None:
    """Call again, or give up; the result entry's name when the job is over."""
    decision: Retry | GiveUp = decide(outcome, before, ctx.policy, datetime.now(UTC))
    if isinstance(decision, Retry) and not _fax_kept(ctx, job):
        log.warning("job %s: its fax file is gone; no further call", job.id)
        decision = GiveUp(GiveUpReason.NOT_RETRYABLE)
    if isinstance(decision, Retry):
        if not ctx.store.claim_requeue(
            job.id,
            round_,
            not_before=decision.not_before.timestamp(),
            fallback=fallback_detail(decision.fallback),
            outcome=str(outcome),
        ):
            return None  # this call's end was handled already (a repeated report)
        if "reason" in detail:
            log.info(
                "job %s: attempt %d not answered (REASON %s)", job.id, round_, detail["reason"]
            )
        log.info(
            "job %s: call %d %s; call %d not before %s%s",
            job.id,
            round_,
            outcome,
            round_ + 1,
            time.ctime(decision.not_before.timestamp()),
            f" ({decision.fallback.describe()})" if decision.fallback else "",
        )
        _wake(ctx)
        return None
    if "reason" in detail:
        return _give_up(ctx, job, EventKind.UNANSWERED, **detail)
    return _give_up(ctx, job, EventKind.FAX_FAILED, **detail)


def _give_up(ctx: Context, job: Job, event: EventKind, **detail: object) -> str | None:
    """The job failed: its final state and its one result mail."""
    text = detail.pop("text", "")
    if not ctx.store.claim_result(job.id, JobState.FAILED, event, only_from=(), **detail):
        return None
    if event is EventKind.UNANSWERED:
        log.info("job %s: failed, %s attempts not answered", job.id, detail.get("attempts"))
    else:
        log.info("job %s: fax failed: %s %s", job.id, detail.get("error"), text)
    _wake(ctx)
    return spool_result(ctx, job.id)


def _wake(ctx: Context) -> None:
    """The line and the number are free: the dispatcher may start the next call now."""
    if not wake(ctx.settings.state_dir):
        log.debug("dispatcher not listening; it starts the next call by itself")
