"""`faxmail resend JOB [--number N]`: fax a finished job's TIFF again.

The resend is a new job linked to the old one (events `resend-of` on the new, `resent` on the
old), not another round of the old job:

- a job has exactly one result mail, claimed once (store.claim_result; notify's rounds and
  claim_requeue refuse to reopen a job with a result). A new job gets its own claim, so the
  sender hears about the resend exactly once, and the first job's record and mail stay true;
- it may go to another number (`--number`), and the number is part of what a job is: the
  result mail, duplicate detection and `faxmail stats` all read the job's number;
- it is another phone call: billed, counted in stats and rate limits like any other.

It goes through the milter's own steps: the number is parsed and checked against the policy as
it is now, with the sender's policy entry (a refusal prints the milter's SMTP reply), then
the milter's Enqueuer — job row, TIFF copy, call file staged and renamed into outgoing/ — with no
rate limit and no duplicate window (the admin asked for exactly this fax).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from faxmail.admin.context import Admin, AdminError
from faxmail.asterisk.spool import Spool
from faxmail.core.policy import Policy, Sender
from faxmail.core.replies import FROM_NOT_ALLOWED, Refusal
from faxmail.outbound.authorize import check_destination
from faxmail.outbound.enqueue import Enqueuer, new_job_id
from faxmail.outbound.recipient import PhoneNumber, parse_number
from faxmail.outbound.senders import entries_for_author
from faxmail.outbound.wake import wake
from faxmail.store.model import FINISHED_STATES, EventKind, Job, JobState, RateLimits

RESENDABLE = FINISHED_STATES
_OPEN = (JobState.QUEUEING, JobState.QUEUED, JobState.SENDING)


@dataclass(frozen=True)
class Resent:
    original: Job
    job: Job


def resend(admin: Admin, reference: str, number: str | None) -> Resent:
    original = admin.job(reference)
    if original.state not in RESENDABLE:
        why = {
            JobState.QUEUEING: "is being queued right now",
            JobState.QUEUED: "is still queued (cancel it first to send it elsewhere)",
            JobState.SENDING: "is being faxed right now",
            JobState.ABANDONED: "was never accepted"
            " (the sender got a temporary error and resends it)",
            JobState.PREVIEWED: "was a preview (mailed back, no fax kept): the sender mails it"
            " to the fax address without 'preview+' to fax it",
        }.get(original.state, f"is {original.state}")
        raise AdminError(f"job {original.id} {why}; nothing to resend")
    _refuse_open_resend(admin, original)
    tiff = Path(original.tiff)
    if not tiff.is_file():
        raise AdminError(
            f"job {original.id}'s fax {tiff} is gone: it is kept for the policy's "
            "notify.keep_sent_tiff_days after the job ended"
        )
    policy = admin.policy()
    try:
        phone = parse_number(number or original.number_e164, policy.destinations.region)
        check_destination(phone, policy, _sender_entry(policy, original))
    except Refusal as refusal:
        raise AdminError(f"refused: {refusal.reply}") from refusal
    spool = Spool.from_settings(admin.settings.asterisk)
    problems = spool.problems()
    if problems:
        raise AdminError(f"faxes cannot be queued: {'; '.join(problems)}")
    job = _new_job(original, phone, number, spool)
    admin.store.add_event(job.id, EventKind.RESEND_OF, job=original.id, by=admin.actor)
    try:
        Enqueuer(spool, admin.store, put_documents=bool(admin.settings.asterisk_hosts)).enqueue(
            job,
            tiff,
            fax=policy.fax.model_copy(update={"duplicate_window_hours": 0}),
            limits=RateLimits(per_hour=None, per_day=None),
        )
    except Refusal as refusal:
        raise AdminError(f"not queued: {refusal.reply}") from refusal
    admin.store.add_event(
        original.id, EventKind.RESENT, as_job=job.id, number=phone.e164, by=admin.actor
    )
    wake(admin.settings.state_dir)  # the daemon's dispatcher places its call
    queued = admin.store.get(job.id)
    return Resent(original, queued or job)


def _refuse_open_resend(admin: Admin, original: Job) -> None:
    """One resend at a time: a second `resend` (a repeated command) would fax it twice."""
    earlier = [
        e.detail.get("as_job")
        for e in admin.query.events([original.id], [EventKind.RESENT])[original.id]
    ]
    for job_id in earlier:
        job = admin.store.get(str(job_id)) if job_id else None
        if job is not None and job.state in _OPEN:
            raise AdminError(
                f"job {job.id}, a resend of {original.id}, is still {job.state}; "
                "wait for its result or cancel it first"
            )


def _sender_entry(policy: Policy, job: Job) -> Sender:
    """The sender's policy entry now: one for the From: address that accepts the job's proof.

    Raises the milter's Refusal when there is none (the sender is no longer allowed). Entries
    without an address (SASL login only) cannot be told from the job, which keeps no login.
    """
    for entry in entries_for_author(policy, job.author, None):
        if job.proof in entry.proof:
            return entry
    raise Refusal(FROM_NOT_ALLOWED.format(sender=job.author))


def _new_job(original: Job, phone: PhoneNumber, number: str | None, spool: Spool) -> Job:
    job_id = new_job_id()
    return replace(
        original,
        id=job_id,
        created=time.time(),
        state=JobState.QUEUEING,
        number_given=number or original.number_given,
        number_e164=phone.e164,
        number_dialled=phone.dialled,
        tiff=str(spool.tiff(job_id)),
    )
