"""`faxmail cancel JOB`: take a queued fax out of faxmail's or Asterisk's queue, mark it
cancelled, and send the sender its one result mail.

A job whose next call waits in faxmail's queue has no call file: it is cancelled in one store
transaction (store.cancel_waiting), which a dispatcher's claim of that call excludes. A job
whose call the dispatcher placed is taken back from Asterisk as follows.

Order: the call file is withdrawn first (takeback.withdraw: parked, or refused while Asterisk
dials it), then the store claims the job's result as "cancelled" — only while the job is still
"queued", in the same transaction as the state change (store.claim_result) — then the parked
file is deleted and the result mail goes through faxmail-notify's own path (spool entry, then
hand-over; `faxmail-notify retry` finishes it if the mail system is down). Because the result
is claimed exactly once per job, a late report from Asterisk can never send a second mail.

A crash between withdrawing and claiming leaves the file parked and the job queued; running
the command again finishes the cancel. "cancelled" is not among the states rate limits count.

Only this host's own spool can be searched: a call placed on a remote Asterisk (AMI) or by
another host's dispatcher is refused by name, never taken for "no call file anywhere".
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from faxmail.admin.context import Admin, AdminError
from faxmail.asterisk.spool import Spool, callfile_name
from faxmail.asterisk.takeback import GRACE_S, Busy, Gone, Located, locate, put_back, withdraw
from faxmail.core.asteriskhosts import LOCAL
from faxmail.core.exitcodes import EX_CONFIG
from faxmail.core.queuepolicy import DialLine
from faxmail.store.model import DispatchRow, EventKind, Job, JobState

log = logging.getLogger("faxmail.cancel")

NO_CALLFILE_AFTER_S = 60.0  # a queued job whose call file is nowhere this long after queueing

_NOT_CANCELLABLE = {
    JobState.QUEUEING: "is being queued by the milter right now (or the milter stopped while "
    "queueing it, and settles it at its next start); try again in a moment",
    JobState.SENDING: "was answered and is being faxed now; a fax in progress cannot be stopped",
    JobState.SENT: "was sent already",
    JobState.FAILED: "is over already: it failed (see `faxmail show`)",
    JobState.CANCELLED: "was cancelled already",
    JobState.ABANDONED: "never reached Asterisk (abandoned after a local fault; the sender got a "
    "temporary error and sends it again)",
    JobState.PREVIEWED: "was a preview: its pages were mailed back, it is never dialled",
}


@dataclass(frozen=True)
class Outcome:
    job: Job
    attempts: int  # dial attempts Asterisk had made
    callfile: str | None  # the withdrawn call file's name; None when there was none
    mail: str  # what became of the result mail, as a sentence
    waiting: bool = False  # it waited in faxmail's queue: there was no call file to take back


def cancel(admin: Admin, reference: str, *, grace: float = GRACE_S) -> Outcome:
    job = admin.job(reference)
    if job.state != JobState.QUEUED:
        why = _NOT_CANCELLABLE.get(job.state, f"is {job.state}")
        raise AdminError(f"job {job.id} {why}; nothing was changed")
    spool = Spool.from_settings(admin.settings.asterisk)
    _check_spool(spool, job)
    waiting = admin.store.dispatch_row(job.id)
    if waiting is not None and waiting.host is None:
        # Its next call waits in faxmail's queue: no call file to take back. One step with
        # the claim, so a dispatcher placing it meanwhile makes this fail, never both.
        attempts = waiting.round - 1
        if admin.store.cancel_waiting(
            job.id, EventKind.CANCELLED, by=admin.actor, attempts=attempts
        ):
            log.info("job %s cancelled by %s while waiting in the queue", job.id, admin.actor)
            return Outcome(job, attempts, None, _mail(admin, job), waiting=True)
        job = admin.job(reference)  # placed meanwhile: take its call file back as before
        if job.state != JobState.QUEUED:
            why = _NOT_CANCELLABLE.get(job.state, f"is {job.state}")
            raise AdminError(f"job {job.id} {why}; nothing was changed")
    if waiting is not None and waiting.host is not None:
        where = placed_elsewhere(waiting, admin.policy().dial_lines(), socket.gethostname())
        if where is not None:
            raise AdminError(f"job {job.id} was not cancelled: {where}; nothing was changed")
    name = callfile_name(job.id, admin.store.current_round(job.id))
    found = locate(spool, name)
    parked, attempts = _take(admin, job, spool, found, name, grace)
    claimed = admin.store.claim_result(
        job.id,
        JobState.CANCELLED,
        EventKind.CANCELLED,
        only_from=(JobState.QUEUED,),
        by=admin.actor,
        callfile=name if parked else None,
        attempts=attempts,
    )
    if not claimed:
        if parked is not None:
            put_back(parked, spool.outgoing)
        now = admin.store.get(job.id)
        state = now.state if now else "gone"
        raise AdminError(f"job {job.id} changed meanwhile (now {state}); it was not cancelled")
    if parked is not None:
        parked.unlink(missing_ok=True)
    log.info("job %s cancelled by %s after %d attempt(s)", job.id, admin.actor, attempts)
    return Outcome(job, attempts, name if parked else None, _mail(admin, job))


def placed_elsewhere(row: DispatchRow, lines: Sequence[DialLine], here: str) -> str | None:
    """Why the placed call `row` is out of this host's reach (`here`: its dispatcher's name,
    the host name), as a clause; None when its call file is in this host's spool."""
    line = next((line for line in lines if line.name == row.line), None)
    if line is not None and line.host != LOCAL:
        return (
            f"its call was handed to Asterisk host {line.host} over AMI, and a call placed "
            "there cannot be taken back; its result comes as usual"
        )
    if row.host is not None and row.host != here:
        return f"its call file is in the spool of host {row.host}: run `faxmail cancel` there"
    return None


def _check_spool(spool: Spool, job: Job) -> None:
    """Refuse settings that do not name the spool this job was queued in: a cancel that looks
    in the wrong place would find nothing and let Asterisk dial anyway."""
    if not spool.outgoing.is_dir():
        raise AdminError(
            f"{spool.outgoing} does not exist: pass the daemon's settings (--settings)",
            EX_CONFIG,
        )
    if Path(job.tiff).parent != spool.faxes:
        raise AdminError(
            f"job {job.id} was queued with its fax in {Path(job.tiff).parent}, but these "
            f"settings use {spool.faxes}: pass the daemon's settings (--settings)",
            EX_CONFIG,
        )


def _take(
    admin: Admin, job: Job, spool: Spool, found: Located, name: str, grace: float
) -> tuple[Path | None, int]:
    """Withdraw the call file; (where it is parked, attempts made). Raises AdminError."""
    state = found.state
    if found.where == "outgoing":
        try:
            withdrawn = withdraw(spool.outgoing, spool.parking, name, grace=grace)
        except Busy as exc:
            raise AdminError(f"job {job.id} was not cancelled: {exc}") from exc
        except Gone as exc:
            raise AdminError(
                f"job {job.id} was not cancelled: Asterisk finished its call just now "
                "(see `faxmail show`)"
            ) from exc
        except OSError as exc:
            raise AdminError(f"job {job.id} was not cancelled: {exc}") from exc
        return withdrawn.parked, withdrawn.state.attempts_started
    if found.where == "parked" and found.path is not None and state is not None:
        # An earlier cancel took it out of outgoing/ and stopped before claiming.
        if (spool.outgoing / name).exists() or state.running(time.time()) is not None:
            put_back(found.path, spool.outgoing)
            raise AdminError(f"job {job.id} was not cancelled: Asterisk is dialling it")
        return found.path, state.attempts_started
    if found.where == "done":
        status = state.status if state else None
        raise AdminError(
            f"job {job.id} was not cancelled: Asterisk has finished its call (archived with "
            f"Status: {status or '?'}); faxmail-notify reports its result"
        )
    if found.where in ("hold", "staging"):
        raise AdminError(
            f"job {job.id} was not cancelled: its next call file is being queued right now "
            "(a fax-level retry); try again in a minute"
        )
    # No call file anywhere: nothing in Asterisk's queue can dial it — unless it is about to
    # be written (the milter or notify queue it within milliseconds of the state change).
    since = _queued_at(admin, job)
    if time.time() - since < NO_CALLFILE_AFTER_S:
        raise AdminError(
            f"job {job.id} was not cancelled: its call file is not in {spool.outgoing} yet; "
            "try again in a minute"
        )
    return None, 0


def _queued_at(admin: Admin, job: Job) -> float:
    kinds = (EventKind.SPOOLED, EventKind.REQUEUED, EventKind.REPAIRED)
    events = admin.query.events([job.id], kinds)[job.id]
    return max([job.created, *(e.at for e in events)])


def _mail(admin: Admin, job: Job) -> str:
    """Spool and hand over the result mail, as faxmail-notify does; a sentence about it."""
    from faxmail.notify.deliver import deliver
    from faxmail.notify.environment import Context
    from faxmail.notify.outbox import NotifySpool
    from faxmail.notify.results import spool_result

    try:
        ctx = Context(
            admin.settings, admin.policy(), admin.store, NotifySpool(admin.settings.notify_spool)
        )
        name = spool_result(ctx, job.id)
        if name is None:
            return "the result mail has no usable address (see the notify log)"
        meta = ctx.spool.read(name)
        to = list(meta.to) if meta is not None else []
        outcome = deliver(ctx, name)
    except Exception as exc:
        log.exception("job %s: result mail", job.id)
        return f"the result mail could not be made yet ({exc}); faxmail-notify retry sends it"
    if outcome == "delivered":
        return f"result mail to {', '.join(to)}: handed over"
    waiting = ctx.spool.read(name)
    error = (waiting.last_error if waiting is not None else None) or "busy"
    return (
        f"result mail to {', '.join(to)}: waiting in the notify spool ({error}); "
        "faxmail-notify retry sends it"
    )
