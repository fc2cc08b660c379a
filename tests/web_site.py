"""A job store for the status page's tests: jobs in every state, some whose Subject, From and
far-end station ID carry HTML and script, a received fax from a hostile caller ID, and TIFFs
in the fax folder; with the settings file `faxmail web` reads."""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from faxmail.store.model import AttemptOutcome, EventKind, Job, JobState, RateLimits
from faxmail.store.sqlite import SqliteStore
from faxmail.web.passwords import make_hash
from test_notify_support import sent_tiff

USER, PASSWORD = "office", "correct horse battery"
HOSTILE_SUBJECT = '<script>window.__pwned = 1</script><b>Invoice</b> & "Q3" <img src=x>'
HOSTILE_AUTHOR = '"<img src=x onerror=window.__pwned=2>" <mallory@evil.example>'
HOSTILE_SENDER = "<svg onload=window.__pwned=3>@evil.example"
HOSTILE_STATION = "<iframe src=//evil.example>"
HOSTILE_CALLER = "<script>alert(1)</script>"

DAY = 86400.0


def job_id(n: int) -> str:
    return f"{n:016x}"


@dataclass(frozen=True)
class Site:
    settings: Path
    fax_dir: Path
    hostile: str  # the job id whose Subject and From carry HTML
    sent: str
    failed: str
    waiting: tuple[str, str]  # first, second in line
    dialling: str
    outside: str  # a job whose TIFF path points outside the fax folder


def make_site(root: Path) -> Site:
    state, spool = root / "state", root / "spool"
    fax_dir = spool / "fax"
    fax_dir.mkdir(parents=True)
    template = sent_tiff(root / "template.tif", pages=2)
    store = SqliteStore(state / "faxmail.sqlite")
    now = time.time()
    base = Job(
        id="",
        created=now,
        state=JobState.QUEUEING,
        sender="alice@example.jp",
        envelope_sender="alice@example.jp",
        author="Alice <alice@example.jp>",
        reply_to=None,
        subject="Quote 2024-117",
        number_given="03-1234-5678",
        number_e164="+81312345678",
        number_dialled="0312345678",
        pages=2,
        digest="",
        message_id="",
        proof="dkim",
        dkim_domain="example.jp",
        language="en",
        tiff="",
        render_seconds=0.4,
        tiff_bytes=template.stat().st_size,
    )

    def add(n: int, age_days: float, **changes: object) -> str:
        ident = job_id(n)
        tiff = fax_dir / f"{ident}.tif"
        shutil.copyfile(template, tiff)
        values: dict[str, object] = {
            "id": ident,
            "created": now - age_days * DAY - n,
            "digest": f"d{n}",
            "message_id": f"<m{n}@example.jp>",
            "tiff": str(tiff),
            **changes,
        }
        job = dataclasses.replace(base, **values)  # type: ignore[arg-type]
        assert store.admit(job, RateLimits(None, None), 0) == "admitted"
        store.queue_job(ident, not_before=job.created)
        return ident

    def claim(ident: str) -> bool:
        job = store.get(ident)
        assert job is not None
        return store.claim_call(
            ident, 1, "pbx", now + 3600, number=job.number_e164, line="default", channels=10
        )

    def fax_sent(ident: str, station: str) -> None:
        assert claim(ident)
        store.record_attempt(ident, 1, 1, AttemptOutcome.ANSWERED, JobState.SENDING)
        store.record_attempt(
            ident, 1, 1, AttemptOutcome.SUCCESS, pages=2, bitrate=14400, station=station
        )
        store.set_state(ident, JobState.SENT, EventKind.FAX_SENT)

    hostile = add(1, 0.1, subject=HOSTILE_SUBJECT, author=HOSTILE_AUTHOR, sender=HOSTILE_SENDER)
    fax_sent(hostile, HOSTILE_STATION)
    sent = add(2, 1)
    fax_sent(sent, "+81 3 1234 5678")
    failed = add(3, 2, number_given="06-9876-5432", number_e164="+81698765432")
    assert claim(failed)
    store.record_attempt(failed, 1, 1, AttemptOutcome.UNANSWERED, reason="5")
    store.set_state(failed, JobState.FAILED, EventKind.UNANSWERED)
    for n, age in ((4, 3), (5, 3), (6, 5)):
        fax_sent(add(n, age), "OFFICE FAX")
    dialling = add(7, 0.01, number_given="045-111-2222", number_e164="+81451112222")
    assert claim(dialling)
    first = add(8, 0.005, number_given="011-222-3333", number_e164="+81112223333")
    second = add(9, 0.001, number_given="022-333-4444", number_e164="+81223334444")
    outside = add(10, 0.2, tiff=str(root / "template.tif"))
    store.set_state(outside, JobState.FAILED, EventKind.NO_REPORT)
    store.add_inbound(
        "rx1", did="0312340000", caller=HOSTILE_CALLER, status="SUCCESS", pages=1,
        recipients=["office@example.jp"],
    )  # fmt: skip
    store.close()

    settings = root / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(state),
                "asterisk": {"spool_dir": str(spool), "user": None},
                "web": {"users": {USER: make_hash(PASSWORD, n=2**14)}},
            }
        )
    )
    return Site(settings, fax_dir, hostile, sent, failed, (first, second), dialling, outside)
