"""`faxmail show JOB`: everything about one job — the decision, the rendering, its call file in
Asterisk's spool, each attempt, the result mail and the job's history.

Gathered once (`Detail`) and printed as text or JSON from the same values.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from faxmail.admin.context import Admin
from faxmail.admin.listing import Facts, dumps, fax_error, gather, printed, reason_of
from faxmail.admin.stats import DEFAULT_BITRATE, answered_calls, call_seconds
from faxmail.admin.text import clip, clock, coloured, iso, local, size, use_colour, zone
from faxmail.asterisk.spool import Spool, callfile_name
from faxmail.asterisk.takeback import Located, locate
from faxmail.notify.templates import mode_text, resolution_text
from faxmail.outbound.senders import entries_for_author
from faxmail.store.model import Attempt, AttemptOutcome, Job, JobState


@dataclass(frozen=True)
class Detail:
    """Everything `faxmail show` says about one job."""

    facts: Facts
    entry: dict[str, Any] | None  # the policy entry that allows the sender now
    policy_error: str | None
    callfile: Located
    callfile_name: str
    mail_meta: dict[str, Any] | None  # the result mail's notify spool entry, while it waits


def job_detail(admin: Admin, job: Job) -> Detail:
    (facts,) = gather(admin, [job], ())
    entry, policy_error = None, None
    try:
        policy = admin.policy()
    except Exception as exc:  # noqa: BLE001 - show the job anyway, and why the entry is missing
        policy_error = str(exc)
    else:
        found = next(
            (e for e in entries_for_author(policy, job.author, None) if job.proof in e.proof),
            None,
        )
        if found is not None:
            entry = {
                "index": policy.senders.index(found),
                "address": found.address,
                "sasl_user": found.sasl_user,
                "proof": list(found.proof),
            }
    name = callfile_name(job.id, admin.store.current_round(job.id))
    located = locate(Spool.from_settings(admin.settings.asterisk), name)
    meta = None
    try:
        loaded = json.loads(
            (admin.settings.notify_spool / f"result-{job.id}" / "meta.json").read_bytes()
        )
        meta = loaded if isinstance(loaded, dict) else None
    except (OSError, ValueError):
        pass
    return Detail(facts, entry, policy_error, located, name, meta)


def detail_json(d: Detail, now: float) -> dict[str, Any]:
    job = d.facts.job
    state = d.callfile.state
    callfile: dict[str, Any] = {
        "name": d.callfile_name,
        "where": d.callfile.where,
        "path": None if d.callfile.path is None else str(d.callfile.path),
    }
    if state is not None:
        running = state.running(now) if d.callfile.where == "outgoing" else None
        callfile.update(
            attempts_started=state.attempts_started,
            max_attempts=state.max_retries + 1,
            running_since=iso(running[1]) if running else None,
            next_look=iso(state.next_look(now)) if d.callfile.where == "outgoing" else None,
            status=state.status,
        )
    result = d.facts.result
    mail = None
    if result is not None:
        meta = d.mail_meta or {}
        mail = {
            "outcome": result.outcome,
            "claimed": iso(result.claimed),
            "delivered": iso(result.delivered),
            "to": meta.get("to") or [job.reply_to or job.author],
            "cc": meta.get("cc") or [],
            "waiting": d.mail_meta is not None,
            "tries": meta.get("tries"),
            "last_error": meta.get("last_error"),
        }
    return {
        "job": {
            **d.facts.summary(),
            "message_id": job.message_id,
            "envelope_sender": job.envelope_sender,
        },
        "decision": {
            "proof": job.proof,
            "dkim_domain": job.dkim_domain,
            "policy_entry": d.entry,
            "policy_error": d.policy_error,
        },
        "rendering": {
            "pages": job.pages,
            "render_seconds": round(job.render_seconds, 2),
            "tiff": job.tiff,
            "tiff_bytes": job.tiff_bytes,
            "tiff_present": Path(job.tiff).is_file(),
            "line_seconds_estimate": round(call_seconds(job, job.pages, None), 1),
        },
        "callfile": callfile,
        "attempts": [
            {
                "round": a.round,
                "attempt": a.attempt,
                "at": iso(a.at),
                "outcome": a.outcome,
                "detail": a.detail,
            }
            for a in d.facts.attempts
        ],
        "line_seconds_estimate": round(
            sum(
                call_seconds(job, c.pages, c.bitrate) for c in answered_calls(job, d.facts.attempts)
            ),
            1,
        ),
        "result_mail": mail,
        "events": [{"at": iso(e.at), "kind": e.kind, "detail": e.detail} for e in d.facts.events],
    }


def show_job(admin: Admin, job: Job, as_json: bool, out: TextIO) -> None:
    d = job_detail(admin, job)
    now = time.time()
    if as_json:
        out.write(dumps(detail_json(d, now)))
        return
    f = d.facts
    colour = use_colour(out)
    lines = [
        f"job {job.id}: {coloured(job.state, job.state, colour)} ({f.last_result()})",
        f"  queued      {local(job.created)} {zone()}",
        f"  from        {job.author} (envelope {job.envelope_sender or '<>'}, "
        f"Reply-To {job.reply_to or '-'})",
        f"  subject     {clip(job.subject, 80) or '-'}",
        f"  message-id  {job.message_id or '-'}",
        f"  number      {job.number_given} = {job.number_e164}, dialled {job.number_dialled}",
    ]
    if f.resend_of:
        lines.append(f"  resend of   {f.resend_of}")
    if f.resent_as:
        lines.append(f"  resent as   {', '.join(f.resent_as)}")
    if f.duplicates:
        lines.append(f"  duplicates  {f.duplicates} resent copy(ies) of the mail, not faxed again")
    lines += ["decision", f"  proof       {_proof(job)}", f"  policy      {_entry(d)}"]
    present = "present" if Path(job.tiff).is_file() else "deleted"
    tiff = f"{job.tiff}, {size(job.tiff_bytes)} ({present})"
    callfile = _callfile_text(d, now)
    if job.state == JobState.PREVIEWED:  # its pages went back by mail: nothing kept, no call
        tiff = f"none kept: {size(job.tiff_bytes)} mailed back to the sender as a preview"
        callfile = "none: a preview is never dialled"
    lines += [
        "rendering",
        f"  pages       {job.pages}, rendered in {job.render_seconds:.2f} s",
        f"  tiff        {tiff}",
        f"  line time   about {call_seconds(job, job.pages, None) / 60:.1f} min per call "
        f"at {DEFAULT_BITRATE} bit/s (estimate)",
        f"call file ({d.callfile_name})",
        f"  {callfile}",
        "attempts",
    ]
    if not f.attempts:
        lines.append("  none")
    for a in f.attempts:
        lines.append(
            f"  {a.round}.{a.attempt}  {clock(a.at)}  {a.outcome:<10}  {_attempt_text(a)}".rstrip()
        )
    lines += ["result mail", f"  {_mail_text(d)}", "events"]
    for e in f.events:
        text = " ".join(f"{k}={_short(v)}" for k, v in sorted(e.detail.items()))
        lines.append(f"  {clock(e.at)}  {e.kind:<22}  {text}".rstrip())
    printed(out, *lines)


def _proof(job: Job) -> str:
    if job.proof == "dkim":
        return f"dkim: a valid DKIM signature of {job.dkim_domain}, aligned with From:"
    if job.proof == "sasl":
        return "sasl: the SMTP AUTH login named in the policy entry"
    if job.proof == "network":
        return "network: the client's address is in the policy entry's networks"
    return job.proof


def _entry(d: Detail) -> str:
    if d.policy_error:
        return f"(the policy cannot be read: {d.policy_error})"
    if d.entry is None:
        return "no entry of the policy as it reads now allows this sender"
    who = d.entry["address"] or f"sasl_user {d.entry['sasl_user']}"
    proof = ", ".join(d.entry["proof"])
    return f"senders[{d.entry['index']}]: {who}, proof {proof} (the policy as it reads now)"


def _callfile_text(d: Detail, now: float) -> str:
    where, state = d.callfile.where, d.callfile.state
    if where == "outgoing" and state is not None:
        counts = f"{state.attempts_started} of {state.max_retries + 1} attempts"
        running = state.running(now)
        if running is not None:
            return f"in outgoing/: Asterisk is dialling it ({counts}, since {clock(running[1])})"
        if state.attempts_started:
            nxt = state.next_look(now)
            return (
                f"in outgoing/: {counts} made; next {clock(nxt) if nxt else 'when Asterisk runs'}"
            )
        nxt = state.next_look(now)
        return "in outgoing/: not dialled yet" + (f" (due {clock(nxt)})" if nxt else "")
    if where == "done" and state is not None:
        return f"archived in outgoing_done/ with Status: {state.status or '?'}"
    if where == "parked":
        return "parked by an interrupted `faxmail cancel`: run it again"
    if where in ("hold", "staging"):
        return "being queued (a fax-level retry)"
    return "none in outgoing/ or outgoing_done/"


def _attempt_text(attempt: Attempt) -> str:
    detail = attempt.detail
    if attempt.outcome == AttemptOutcome.UNANSWERED:
        return reason_of(attempt)
    if attempt.outcome == AttemptOutcome.ANSWERED:
        return ""
    parts = []
    if detail.get("pages") is not None:
        parts.append(f"{detail['pages']} page(s)")
    if detail.get("bitrate"):
        parts.append(f"{detail['bitrate']} bit/s")
    if detail.get("resolution"):
        parts.append(resolution_text("en", str(detail["resolution"])))
    if detail.get("mode"):
        parts.append(mode_text("en", str(detail["mode"])))
    if detail.get("station"):
        parts.append(f"station {clip(str(detail['station']), 30)}")
    if attempt.outcome == AttemptOutcome.FAILED:
        parts.append(clip(fax_error(detail), 60))
    return ", ".join(parts)


def _mail_text(d: Detail) -> str:
    result, job = d.facts.result, d.facts.job
    if result is None:
        return "none yet: the job is not over"
    meta = d.mail_meta
    to = ", ".join(meta.get("to") or []) if meta else (job.reply_to or job.author)
    if result.delivered is not None:
        how = f"handed over {clock(result.delivered)}"
    elif meta is not None:
        how = (
            f"waiting in the notify spool (tries: {meta.get('tries')}, "
            f"last error: {meta.get('last_error') or '-'})"
        )
    else:
        how = "not handed over (faxmail-notify retry makes it)"
    return f"{result.outcome}, claimed {clock(result.claimed)}, {how}; to {to}"


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return clip(text, 60)
