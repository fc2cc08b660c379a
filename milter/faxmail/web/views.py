"""What the status page shows, as typed values gathered through the admin commands' queries
(admin/listing.py, admin/queueview.py, admin/stats.py): no SQL here, no HTML either.

Every string that came in a mail or a call (subjects, addresses, caller IDs, station IDs) stays
a plain `str` here; the template's autoescape makes it text on the page.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from faxmail.admin.context import Admin
from faxmail.admin.listing import Facts, gather
from faxmail.admin.queueview import queue_places
from faxmail.admin.stats import dial_attempts, tally
from faxmail.admin.text import clock, local, zone
from faxmail.asterisk.spool import FAXES
from faxmail.queue.lines import line_for, lines_of
from faxmail.store.model import Attempt, Inbound, Job, JobFilter
from faxmail.web.thumbnail import servable_tiff


@dataclass(frozen=True)
class Waiting:
    place: int
    job_id: str
    number: str
    call: int
    next_call: str  # "when the line is free" or a time


@dataclass(frozen=True)
class Dialling:
    job_id: str
    number: str
    since: str


@dataclass(frozen=True)
class LineView:
    name: str
    channels: int
    dialling: list[Dialling]
    waiting: list[Waiting]


@dataclass(frozen=True)
class JobRow:
    id: str
    created: str
    sender: str
    subject: str
    number: str
    pages: int
    state: str
    attempts: int
    last_result: str
    station: str  # the far end's fax station ID of its last answered call, if any
    thumbnail: bool  # its TIFF is still there: the page shows page 1


@dataclass(frozen=True)
class InboundRow:
    received: str
    did: str
    caller: str
    pages: str
    status: str
    routed_to: list[str]
    mail: str


@dataclass(frozen=True)
class Day:
    day: date
    outgoing: int  # faxes queued that day, as admin/stats.py counts them (not abandoned)
    received: int
    line_minutes: float


@dataclass(frozen=True)
class StatusPage:
    generated: str
    zone: str
    lines: list[LineView]
    jobs: list[JobRow]
    inbound: list[InboundRow]
    days: list[Day]


def status_page(admin: Admin, now: float | None = None) -> StatusPage:
    now = time.time() if now is None else now
    web = admin.settings.web
    jobs = admin.query.jobs(JobFilter(limit=web.recent_jobs))
    first = local_day(now) - timedelta(days=web.chart_days - 1)
    since = datetime.combine(first, datetime.min.time()).timestamp()  # local midnight
    chart_jobs = admin.query.jobs(JobFilter(since=since))
    return StatusPage(
        generated=local(now),
        zone=zone(),
        lines=queue_lines(admin, now),
        jobs=[job_row(f, fax_dir(admin)) for f in gather(admin, jobs)],
        inbound=[inbound_row(admin, fax) for fax in admin.query.inbound(None, web.recent_jobs)],
        days=daily(
            chart_jobs,
            admin.query.attempts([j.id for j in chart_jobs]),
            admin.query.inbound(since),
            first,
            web.chart_days,
        ),
    )


def queue_lines(admin: Admin, now: float) -> list[LineView]:
    """Each line of the policy: the calls it is dialling, then its waiting jobs in turn."""
    policy = admin.policy()
    places = queue_places(admin.store, policy, datetime.fromtimestamp(now, UTC))
    dialling: dict[str, list[Dialling]] = defaultdict(list)
    for row in admin.store.dispatch_rows(claimed=True):
        job = admin.store.get(row.job_id)
        if job is not None:
            since = clock(row.claimed or row.not_before)
            dialling[line_for(job.number_e164, policy)].append(
                Dialling(job.id, job.number_given, since)
            )
    waiting: dict[str, list[Waiting]] = defaultdict(list)
    for job_id, place in places.items():
        job = admin.store.get(job_id)
        if job is None:
            continue
        due = place.next_call <= now + 1  # now went through a datetime: allow its rounding
        when = "when the line is free" if due else clock(place.next_call)
        waiting[place.line].append(Waiting(place.place, job.id, job.number_given, place.call, when))
    return [
        LineView(
            line.name,
            line.channels,
            dialling[line.name],
            sorted(waiting[line.name], key=lambda w: w.place),
        )
        for line in lines_of(policy)
    ]


def fax_dir(admin: Admin) -> Path:
    """Where the daemon writes the TIFFs of queued faxes (asterisk.fax_dir)."""
    asterisk = admin.settings.asterisk
    return asterisk.fax_dir or asterisk.spool_dir / FAXES


def job_row(facts: Facts, faxes: Path) -> JobRow:
    job = facts.job
    return JobRow(
        id=job.id,
        created=local(job.created),
        sender=job.sender,
        subject=job.subject,
        number=job.number_given,
        pages=job.pages,
        state=str(job.state),
        attempts=dial_attempts(facts.attempts),
        last_result=facts.last_result(),
        station=last_station(facts.attempts),
        thumbnail=servable_tiff(job.tiff, faxes) is not None,
    )


def last_station(attempts: Iterable[Attempt]) -> str:
    stations = [str(a.detail["station"]) for a in attempts if a.detail.get("station")]
    return stations[-1] if stations else ""


def inbound_row(admin: Admin, fax: Inbound) -> InboundRow:
    detail = fax.detail
    if fax.delivered is not None:
        mail = f"delivered {clock(fax.delivered)}"
    elif (admin.settings.notify_spool / f"in-{fax.id}").is_dir():
        mail = "waiting in the notify spool"
    else:
        mail = "not delivered"
    pages = detail.get("pages")
    return InboundRow(
        received=local(fax.received),
        did=str(detail.get("did") or "-"),
        caller=str(detail.get("caller") or "-"),
        pages="-" if pages is None else str(pages),
        status=str(detail.get("status") or "-"),
        routed_to=[str(r) for r in detail.get("recipients") or []],
        mail=mail,
    )


def local_day(timestamp: float) -> date:
    return datetime.fromtimestamp(timestamp).date()


def daily(
    jobs: Iterable[Job],
    attempts: dict[str, list[Attempt]],
    inbound: Iterable[Inbound],
    first: date,
    days: int,
) -> list[Day]:
    """Faxes out and in, and estimated line minutes, per local day from `first` on."""
    by_day: dict[date, list[Job]] = defaultdict(list)
    for job in jobs:
        by_day[local_day(job.created)].append(job)
    received: dict[date, int] = defaultdict(int)
    for fax in inbound:
        received[local_day(fax.received)] += 1
    out = []
    for n in range(days):
        day = first + timedelta(days=n)
        total = tally(by_day[day], attempts).total
        out.append(Day(day, total.faxes, received[day], round(total.line_seconds / 60, 1)))
    return out
