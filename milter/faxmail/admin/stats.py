"""`faxmail stats`: per sender and per destination — faxes, pages, success rate, line minutes.

Line time is estimated, per answered call, from what was measured on a real Asterisk (see
docs): about 13 s for the call itself (dialling, answer, T.30 training, hang-up) plus about
1.2 x the bits of the pages transmitted / the bit rate. A page's bits are the job's TIFF size /
its pages (G4, as faxed); the pages transmitted are FAXPAGES of that call, the bit rate its
FAXBITRATE (14400 when unknown). Unanswered attempts cost no line time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from faxmail.admin.context import Admin
from faxmail.admin.text import clip, dump_json, iso, local, table, zone
from faxmail.store.model import FINISHED_STATES, Attempt, AttemptOutcome, Job, JobFilter, JobState

CALL_SETUP_S = 13.0
LINE_FACTOR = 1.2
DEFAULT_BITRATE = 14400

ESTIMATE = (
    f"line time per answered call: {CALL_SETUP_S:.0f} s + {LINE_FACTOR} x the bits of the pages "
    f"sent / the call's bit rate ({DEFAULT_BITRATE} when unknown); a page's bits: the TIFF's "
    "size / its pages; unanswered attempts: none"
)

_COUNTED = (JobState.QUEUED, JobState.SENDING, *FINISHED_STATES)  # jobs that reached Asterisk
_ANSWERED = (AttemptOutcome.ANSWERED, AttemptOutcome.SUCCESS, AttemptOutcome.FAILED)
_BUSY_REASONS = ("5", "8")  # Asterisk's REASON: busy, congestion


def call_seconds(job: Job, pages: int, bitrate: int | None) -> float:
    """Estimated line time of one answered call that transmitted `pages` of `job`."""
    page_bits = job.tiff_bytes * 8 / max(job.pages, 1)
    return CALL_SETUP_S + LINE_FACTOR * pages * page_bits / (bitrate or DEFAULT_BITRATE)


@dataclass(frozen=True)
class Call:
    """One answered call: its fax outcome (or "answered" while unknown), pages, bit rate."""

    round: int
    attempt: int
    outcome: AttemptOutcome
    pages: int
    bitrate: int | None


def answered_calls(job: Job, attempts: Iterable[Attempt]) -> list[Call]:
    """The job's answered calls, each once (its fax outcome wins over its "answered" row)."""
    calls: dict[tuple[int, int], Call] = {}
    for a in attempts:
        if a.outcome not in _ANSWERED:
            continue
        pages = _int(a.detail.get("pages"))
        if a.outcome == AttemptOutcome.SUCCESS and pages is None:
            pages = job.pages
        key = (a.round, a.attempt)
        if a.outcome == AttemptOutcome.ANSWERED and key in calls:
            continue
        calls[key] = Call(a.round, a.attempt, a.outcome, pages or 0, _int(a.detail.get("bitrate")))
    return list(calls.values())


def dial_attempts(attempts: Iterable[Attempt]) -> int:
    """Calls Asterisk placed: each unanswered attempt and each answered call once."""
    return len({(a.round, a.attempt) for a in attempts})


def _int(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


@dataclass
class Tally:
    key: str
    label: str = ""
    faxes: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    open: int = 0
    pages: int = 0  # pages transmitted
    pages_submitted: int = 0
    calls: int = 0  # dial attempts
    busy: int = 0  # of them: the far line busy or congested (faxmail calls again soon)
    unanswered: int = 0  # of them: any other call nobody answered (busy included)
    answered: int = 0
    line_seconds: float = 0.0
    numbers: set[str] = field(default_factory=set)
    previews: int = 0  # previewed numbers (the total's only): rate-limit counted, never a call

    def add(self, job: Job, attempts: list[Attempt]) -> None:
        self.faxes += 1
        self.pages_submitted += job.pages
        if job.state in FINISHED_STATES:
            setattr(self, job.state, getattr(self, job.state) + 1)
        else:
            self.open += 1
        self.calls += dial_attempts(attempts)
        for attempt in attempts:
            if attempt.outcome == AttemptOutcome.UNANSWERED:
                self.unanswered += 1
                self.busy += str(attempt.detail.get("reason")) in _BUSY_REASONS
        for call in answered_calls(job, attempts):
            self.answered += 1
            self.pages += call.pages
            self.line_seconds += call_seconds(job, call.pages, call.bitrate)
        self.numbers.add(job.number_e164)

    @property
    def success_rate(self) -> float | None:
        done = self.sent + self.failed
        return self.sent / done if done else None

    def as_json(self, name: str) -> dict[str, Any]:
        rate = self.success_rate
        return {
            name: self.key,
            "faxes": self.faxes,
            "sent": self.sent,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "open": self.open,
            "success_rate": None if rate is None else round(rate, 4),
            "pages": self.pages,
            "pages_submitted": self.pages_submitted,
            "calls": self.calls,
            "answered_calls": self.answered,
            "busy_calls": self.busy,
            "unanswered_calls": self.unanswered,
            "line_minutes": round(self.line_seconds / 60, 2),
        }


@dataclass(frozen=True)
class Stats:
    senders: list[Tally]
    destinations: list[Tally]
    total: Tally


def tally(jobs: Iterable[Job], attempts: dict[str, list[Attempt]]) -> Stats:
    senders: dict[str, Tally] = {}
    destinations: dict[str, Tally] = {}
    total = Tally("total")
    for job in jobs:
        if job.state == JobState.PREVIEWED:
            total.previews += 1
        if job.state not in _COUNTED:
            continue  # abandoned or still being queued: never a call
        tried = attempts.get(job.id, [])
        for rows, key in ((senders, job.sender), (destinations, job.number_e164)):
            row = rows.setdefault(key, Tally(key))
            if rows is destinations and not row.label:
                row.label = job.number_given
            row.add(job, tried)
        total.add(job, tried)

    def ordered(rows: dict[str, Tally]) -> list[Tally]:
        return sorted(rows.values(), key=lambda t: (-t.faxes, -t.line_seconds, t.key))

    return Stats(ordered(senders), ordered(destinations), total)


def show_stats(admin: Admin, since: float, as_json: bool, out: TextIO) -> None:
    jobs = admin.query.jobs(JobFilter(since=since))
    stats = tally(jobs, admin.query.attempts([j.id for j in jobs]))
    if as_json:
        dump_json(
            {
                "since": iso(since),
                "senders": [t.as_json("sender") for t in stats.senders],
                "destinations": [
                    {**t.as_json("number_e164"), "number": t.label} for t in stats.destinations
                ],
                "total": {**stats.total.as_json("total"), "previews": stats.total.previews},
                "line_time_estimate": ESTIMATE,
            },
            out,
        )
        return
    print(f"faxes queued since {local(since, seconds=False)} ({zone()})", file=out)
    previews = stats.total.previews
    if not stats.total.faxes:
        print(
            "none" + (f"; {previews} preview(s) mailed back, never dialled" if previews else ""),
            file=out,
        )
        return
    for title, rows in (("SENDER", stats.senders), ("DESTINATION", stats.destinations)):
        cells = [_cells(t.key if title == "SENDER" else f"{t.key} ({t.label})", t) for t in rows]
        cells.append(_cells("total", stats.total))
        print(file=out)
        headers = [title, *_HEADERS]
        for line in table(headers, cells, right=frozenset(range(1, len(headers)))):
            print(line, file=out)
    if previews:
        print(
            f"\npreviews mailed back (never dialled, counted by the rate limits): {previews}",
            file=out,
        )
    print(f"\nline minutes are estimated: {ESTIMATE}", file=out)


_HEADERS = ["FAXES", "SENT", "FAILED", "CANCELLED", "OPEN", "SUCCESS", "PAGES", "CALLS", "LINE MIN"]


def _cells(name: str, t: Tally) -> list[str]:
    rate = t.success_rate
    return [
        clip(name, 44),
        str(t.faxes),
        str(t.sent),
        str(t.failed),
        str(t.cancelled),
        str(t.open),
        "-" if rate is None else f"{rate:.0%}",
        str(t.pages),
        str(t.calls),
        f"{t.line_seconds / 60:.1f}",
    ]
