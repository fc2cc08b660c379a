"""`faxmail jobs`: the fax jobs (or received faxes), newest first, from the job store.

The facts about a job are gathered once (`Facts`: the job, its attempts, its result claim, its
events) and printed as text or as JSON from the same values, so the two never disagree;
`faxmail show` (admin/show.py) builds on them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TextIO

from faxmail.admin.context import Admin
from faxmail.admin.queueview import QueuePlace, queue_places
from faxmail.admin.stats import dial_attempts
from faxmail.admin.text import clip, clock, iso, local, table, use_colour, zone
from faxmail.notify.templates import reason_text
from faxmail.store.model import (
    Attempt,
    AttemptOutcome,
    Event,
    EventKind,
    Inbound,
    Job,
    JobFilter,
    JobState,
    Result,
)

LINK_EVENTS = (EventKind.RESENT, EventKind.RESEND_OF, EventKind.DUPLICATE, EventKind.CANCELLED)


@dataclass(frozen=True)
class Facts:
    job: Job
    attempts: list[Attempt]
    result: Result | None
    events: list[Event]  # LINK_EVENTS only for `jobs`; all of them for `show`
    queue: QueuePlace | None = None  # its place in faxmail's queue, while its next call waits

    @property
    def resend_of(self) -> str | None:
        return next(
            (str(e.detail.get("job")) for e in self.events if e.kind == EventKind.RESEND_OF), None
        )

    @property
    def resent_as(self) -> list[str]:
        return [str(e.detail.get("as_job")) for e in self.events if e.kind == EventKind.RESENT]

    @property
    def duplicates(self) -> int:
        return sum(1 for e in self.events if e.kind == EventKind.DUPLICATE)

    def last_result(self) -> str:
        """One line on how the job's calls went."""
        job, attempts = self.job, self.attempts
        if job.state == JobState.QUEUED and self.queue is not None:
            return self.queue.describe(time.time(), clock(self.queue.next_call))
        if job.state == JobState.CANCELLED:
            at = next((e.at for e in self.events if e.kind == EventKind.CANCELLED), float("inf"))
            tried = dial_attempts(a for a in attempts if a.at <= at)
            text = f"cancelled after {tried} attempt(s)" if tried else "cancelled before dialling"
            if any(a.at > at for a in attempts):
                text += "; yet Asterisk reported a call after that (see `faxmail show`)"
            return text
        if not attempts:
            return {
                JobState.QUEUED: "waiting for Asterisk",
                JobState.QUEUEING: "being queued",
                JobState.ABANDONED: "never queued (local fault)",
                JobState.PREVIEWED: "preview: pages mailed back, never dialled",
            }.get(job.state, "-")
        last = attempts[-1]
        if last.outcome == AttemptOutcome.UNANSWERED:
            return f"{reason_of(last)} (attempt {dial_attempts(attempts)})"  # calls so far
        if last.outcome == AttemptOutcome.ANSWERED:
            faxing = job.state == JobState.SENDING
            return "answered, faxing" if faxing else "answered, no fax report"
        if last.outcome == AttemptOutcome.SUCCESS:
            pages = last.detail.get("pages", job.pages)
            rate = last.detail.get("bitrate")
            return f"fax sent, {pages} page(s)" + (f", {rate} bit/s" if rate else "")
        return f"fax failed: {fax_error(last.detail)}"

    def summary(self) -> dict[str, Any]:
        job = self.job
        return {
            "id": job.id,
            "created": iso(job.created),
            "state": job.state,
            "sender": job.sender,
            "author": job.author,
            "reply_to": job.reply_to,
            "subject": job.subject,
            "number": job.number_given,
            "number_e164": job.number_e164,
            "number_dialled": job.number_dialled,
            "pages": job.pages,
            "attempts": dial_attempts(self.attempts),
            "last_result": self.last_result(),
            "result_mail": None
            if self.result is None
            else {
                "outcome": self.result.outcome,
                "claimed": iso(self.result.claimed),
                "delivered": iso(self.result.delivered),
            },
            "resend_of": self.resend_of,
            "resent_as": self.resent_as,
            "duplicates": self.duplicates,
            "queue": None if self.queue is None else self.queue.as_json(iso(self.queue.next_call)),
        }


def reason_of(attempt: Attempt) -> str:
    reason = attempt.detail.get("reason")
    return reason_text("en", None if reason is None else str(reason))


def fax_error(detail: dict[str, Any]) -> str:
    parts = [str(detail[k]) for k in ("error", "status_string") if detail.get(k)]
    return " / ".join(dict.fromkeys(parts)) or str(detail.get("status") or "the call ended early")


def gather(
    admin: Admin, jobs: list[Job], kinds: tuple[EventKind, ...] = LINK_EVENTS
) -> list[Facts]:
    ids = [j.id for j in jobs]
    attempts = admin.query.attempts(ids)
    results = admin.query.results(ids)
    events = admin.query.events(ids, kinds)
    places = queue_places(admin.store, admin.policy(), datetime.now(UTC))
    return [
        Facts(j, attempts[j.id], results.get(j.id), events[j.id], places.get(j.id)) for j in jobs
    ]


def printed(out: TextIO, *lines: str) -> None:
    for line in lines:
        print(line, file=out)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _limited(found: list[Any], limit: int | None) -> tuple[list[Any], bool]:
    """`found` was asked for one more than `limit`: (the rows to show, whether more match)."""
    if limit is None or len(found) <= limit:
        return found, False
    return found[:limit], True


# --- faxmail jobs ----------------------------------------------------------------------------


def list_jobs(admin: Admin, wanted: JobFilter, as_json: bool, out: TextIO) -> None:
    limit = wanted.limit
    found = admin.query.jobs(replace(wanted, limit=None if limit is None else limit + 1))
    jobs, more = _limited(found, limit)
    facts = gather(admin, jobs)
    if as_json:
        out.write(dumps({"jobs": [f.summary() for f in facts], "more": more}))
        return
    if not facts:
        printed(out, "no jobs match")
        return
    cells = []
    for f in facts:
        note = f.last_result()
        if f.resend_of:
            note += f"; resend of {f.resend_of}"
        if f.resent_as:
            note += f"; resent as {', '.join(f.resent_as)}"
        job = f.job
        cells.append(
            [
                job.id,
                local(job.created),
                clip(job.sender, 30),
                clip(job.number_given, 18),
                str(job.pages),
                job.state,
                str(dial_attempts(f.attempts)),
                clip(note, 70),
            ]
        )
    headers = ["JOB", "QUEUED", "SENDER", "NUMBER", "PAGES", "STATE", "TRIES", "LAST RESULT"]
    printed(
        out,
        *table(
            headers,
            cells,
            right=frozenset({4, 6}),
            states=[f.job.state for f in facts],
            state_column=5,
            colour=use_colour(out),
        ),
        f"{len(facts)} job(s), newest first; times in {zone()}"
        + ("; more match: --limit 0 shows all" if more else ""),
    )


def list_inbound(
    admin: Admin, since: float | None, limit: int | None, as_json: bool, out: TextIO
) -> None:
    found, more = _limited(admin.query.inbound(since, None if limit is None else limit + 1), limit)
    rows = [_inbound_json(admin, fax) for fax in found]
    if as_json:
        out.write(dumps({"inbound": rows, "more": more}))
        return
    if not rows:
        printed(out, "no received faxes match")
        return
    cells = []
    for fax, row in zip(found, rows, strict=True):
        if fax.delivered is not None:
            mail = f"delivered {clock(fax.delivered)}"
        else:
            mail = "waiting in the notify spool" if row["mail_waiting"] else "not delivered"
        cells.append(
            [
                local(fax.received),
                clip(row["did"] or "-", 16),
                clip(row["caller"] or "-", 20),
                "-" if row["pages"] is None else str(row["pages"]),
                row["status"] or "-",
                clip(", ".join(row["routed_to"]) or "-", 44),
                mail,
            ]
        )
    headers = ["RECEIVED", "DID", "CALLER", "PAGES", "STATUS", "ROUTED TO", "MAIL"]
    printed(
        out,
        *table(headers, cells, right=frozenset({3})),
        f"{len(rows)} received fax(es), newest first; times in {zone()}"
        + ("; more match: --limit 0 shows all" if more else ""),
    )


def _inbound_json(admin: Admin, fax: Inbound) -> dict[str, Any]:
    detail = fax.detail
    waiting = fax.delivered is None and (admin.settings.notify_spool / f"in-{fax.id}").is_dir()
    return {
        "id": fax.id,
        "received": iso(fax.received),
        "did": str(detail.get("did") or ""),
        "caller": str(detail.get("caller") or ""),
        "pages": detail.get("pages"),
        "status": str(detail.get("status") or ""),
        "routed_to": [str(r) for r in detail.get("recipients") or []],
        "mail_delivered": iso(fax.delivered),
        "mail_waiting": waiting,
    }
