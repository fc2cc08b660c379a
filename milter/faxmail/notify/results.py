"""The one result mail of a sent (or failed) fax job: recipients, spool entry, message.

Everything in it comes from the job store — the job the milter recorded and the attempts
notify recorded — never from the command line: the recipient is the job's Reply-To or From.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import img2pdf

from faxmail.core.queuepolicy import Fallback
from faxmail.notify.entry import BuildError, BuiltMail, MailMeta, new_meta
from faxmail.notify.environment import Context
from faxmail.notify.messages import AddressError, Part, compose, mailbox
from faxmail.notify.templates import mode_text, reason_text, resolution_text, words
from faxmail.store.model import Attempt, AttemptOutcome, EventKind, Job, JobState

log = logging.getLogger("faxmail_notify.results")


def spool_result(ctx: Context, job_id: str) -> str | None:
    """Make sure the claimed result of `job_id` has its spool entry; return the entry name."""
    name = f"result-{job_id}"
    # Under the spool lock: a delivery retiring this entry marks it delivered in the same step.
    with ctx.spool.guard():
        if ctx.spool.exists(name):
            return name
        if job_id not in ctx.store.pending_results():
            return None  # delivered already
        job = ctx.store.get(job_id)
        if job is None:
            log.error("job %s: result claimed but the job is gone", job_id)
            return None
        to, cc = _recipients(ctx, job)
        if not to:
            log.error("job %s: no usable address for the result mail", job_id)
            return None
        ctx.spool.create(name, new_meta("result", job_id, ctx.spooled_sender, to, cc))
    return name


def _recipients(ctx: Context, job: Job) -> tuple[list[str], list[str]]:
    to = []
    for candidate in (job.reply_to, job.author):
        try:
            if candidate:
                to = [mailbox(candidate).addr_spec]
                break
        except AddressError:
            log.warning("job %s: unusable result address %r", job.id, candidate)
    admin = ctx.policy.admin_cc
    when = ctx.policy.notify.admin_cc
    wanted = when == "always" or (when == "failed" and job.state != JobState.SENT)
    cc = [admin] if admin and wanted and [admin] != to else []
    return (to, cc) if to else (cc, [])


def build_result(ctx: Context, meta: MailMeta) -> BuiltMail:
    job = ctx.store.get(meta.ref)
    if job is None:
        raise BuildError(f"job {meta.ref} is not in the store")
    text = words(job.language)
    # sent / failed / cancelled (by the admin: `faxmail cancel`)
    outcome = job.state if job.state in (JobState.SENT, JobState.CANCELLED) else JobState.FAILED
    attempts = ctx.store.attempts(job.id)
    if outcome == JobState.CANCELLED:
        error = text["cancelled_error"]
    elif any(kind == EventKind.NO_REPORT for _, kind, _ in ctx.store.events(job.id)):
        error = text["no_report"]  # settled by sweep.py from Asterisk's archive
    elif any(kind == EventKind.LEASE_EXPIRED for _, kind, _ in ctx.store.events(job.id)):
        error = text["lease_expired"]  # settled by sweep.expire_leases: the outcome is unknown
    else:
        error = _error(job.language, attempts, text)
    subject = job.subject or job.number_given
    lines = [
        text[f"{outcome}_intro"].format(number=job.number_given),
        "",
        *_facts(job, attempts, outcome, error, text),
        "",
        f"{text['attempts']}:",
        *_attempt_lines(job.language, attempts),
        "",
    ]
    attachments = []
    tiff = Path(job.tiff)
    if ctx.policy.notify.attach_pdf:
        pdf = _pdf(tiff)
        if pdf is not None:
            attachments.append(Part(pdf, "application/pdf", f"fax-{job.number_dialled}.pdf"))
        lines.append(text["attached_pdf" if pdf is not None else "no_pdf"])
    if ctx.policy.notify.keep_sent_tiff_days == 0:
        # The job is over: no call needs the TIFF.
        meta = replace(meta, remove_after=(*meta.remove_after, str(tiff)))
    lines += ["", text["footer"]]
    built = compose(
        sender=ctx.from_header,
        to=meta.to,
        cc=meta.cc,
        subject=text[f"{outcome}_subject"].format(subject=subject),
        text="\n".join(lines) + "\n",
        attachments=attachments,
    )
    return BuiltMail(built.data, meta.with_message(built))


def _pdf(tiff: Path) -> bytes | None:
    """The TIFF as faxed, as PDF (lossless); None when it is gone or unreadable."""
    if not tiff.is_file():
        return None
    try:
        return bytes(img2pdf.convert(str(tiff)))
    except Exception as exc:  # noqa: BLE001 - img2pdf raises many types; the mail goes anyway
        log.warning("cannot attach %s as PDF: %r", tiff, exc)
        return None


def _facts(
    job: Job, attempts: list[Attempt], outcome: str, error: str, text: dict[str, str]
) -> list[str]:
    reports = (AttemptOutcome.SUCCESS, AttemptOutcome.FAILED)
    fax = next((a.detail for a in reversed(attempts) if a.outcome in reports), {})
    success = outcome == JobState.SENT
    rows: list[tuple[str, Any]] = [
        (text["number"], f"{job.number_given} ({job.number_e164})"),
        (text["status"], text[f"status_{outcome}"]),
        (text["pages"], text["pages_of"].format(sent=fax.get("pages") or 0, total=job.pages)),
        (text["bitrate"], f"{fax['bitrate']} bit/s" if fax.get("bitrate") else "-"),
        (text["resolution"], resolution_text(job.language, _str(fax.get("resolution")))),
        (text["mode"], mode_text(job.language, _str(fax.get("mode")))),
        (text["station"], fax.get("station") or "-"),
    ]
    if not success:
        rows.append((text["error"], error))
    rows += [
        (text["subject"], job.subject or "-"),
        (text["queued"], _when(job.created)),
        (text["job"], job.id),
    ]
    return [f"  {label}: {value}" for label, value in rows]


def _error(language: str, attempts: list[Attempt], text: dict[str, str]) -> str:
    if not attempts:
        return "-"
    last = attempts[-1]
    if last.outcome == AttemptOutcome.UNANSWERED:
        count = sum(1 for a in attempts if a.outcome == AttemptOutcome.UNANSWERED)
        reason = reason_text(language, _str(last.detail.get("reason")))
        return text["unanswered_error"].format(attempts=count, reason=reason)
    return _fax_error(last.detail, text)


def _fax_error(detail: dict[str, Any], text: dict[str, str]) -> str:
    if not detail.get("status"):
        return text["no_fax"]
    parts = [str(detail.get(k)) for k in ("error", "status_string") if detail.get(k)]
    return " / ".join(dict.fromkeys(parts)) or str(detail["status"])


def _attempt_lines(language: str, attempts: list[Attempt]) -> list[str]:
    text = words(language)
    lines: list[str] = []
    for attempt in (a for a in attempts if a.outcome != AttemptOutcome.ANSWERED):
        if attempt.outcome == AttemptOutcome.UNANSWERED:
            what = reason_text(language, _str(attempt.detail.get("reason")))
        elif attempt.outcome == AttemptOutcome.SUCCESS:
            what = f"{text['answered']}{text['then']}{text['fax_ok']}"
        else:
            error = _fax_error(attempt.detail, text)
            what = f"{text['answered']}{text['then']}{text['fax_failed']}: {error}"
        fallback = attempt.detail.get("fallback")
        if isinstance(fallback, dict) and fallback:
            what += f" ({Fallback.model_validate(fallback).describe()})"
        lines.append(f"  {len(lines) + 1}. {_when(attempt.at)}  {what}")
    return lines or ["  -"]


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _str(value: object) -> str | None:
    return None if value is None else str(value)
