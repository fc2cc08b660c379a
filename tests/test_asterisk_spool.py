"""asterisk/spool.py: every name faxmail gives a file in Asterisk's spool, from one place; and
the Enqueuer's memory of unsettled jobs belongs to it, not to the process."""

from __future__ import annotations

from pathlib import Path

import pytest

from faxmail.asterisk.spool import (
    CALLFILES,
    PARTIAL_TIFFS,
    Spool,
    callfile_name,
    partial_tiff_name,
    tiff_name,
)
from faxmail.core.policy import Fax
from faxmail.core.replies import LOCAL_ERROR, Refusal
from faxmail.core.settings import Asterisk
from faxmail.outbound.enqueue import Enqueuer
from faxmail.store.errors import StoreUnavailable
from faxmail.store.model import Job, RateLimits

JOB = "0123456789abcdef"


def test_callfile_names_say_their_round() -> None:
    assert callfile_name(JOB) == "0123456789abcdef.call"
    assert callfile_name(JOB, 1) == "0123456789abcdef.call"
    assert callfile_name(JOB, 2) == "0123456789abcdef-r2.call"
    for round_ in (1, 2, 7):
        assert Path(callfile_name(JOB, round_)).match(CALLFILES)


def test_tiff_names() -> None:
    assert tiff_name(JOB) == "0123456789abcdef.tif"
    partial = partial_tiff_name(JOB)
    assert partial.startswith(".") and partial != tiff_name(JOB)
    assert Path(partial).match(PARTIAL_TIFFS)
    assert not Path(tiff_name(JOB)).match(PARTIAL_TIFFS)


def test_folders_from_the_settings(tmp_path: Path) -> None:
    spool = Spool.from_settings(Asterisk(spool_dir=tmp_path, user=None))
    assert spool.outgoing == tmp_path / "outgoing"
    assert spool.staging == tmp_path / "faxmail-staging"
    assert spool.faxes == tmp_path / "fax"
    assert spool.done == tmp_path / "outgoing_done"
    # faxmail's own folders are on outgoing/'s filesystem: their renames stay atomic
    assert spool.hold == tmp_path / "faxmail-staging" / "faxmail-notify-hold"
    assert spool.parking == tmp_path / "faxmail-staging" / "faxmail-cancelled"
    assert spool.owner is None and spool.missing_user is None
    elsewhere = Spool.from_settings(Asterisk(spool_dir=tmp_path, fax_dir=tmp_path / "t"))
    assert elsewhere.faxes == tmp_path / "t"


def test_paths_of_one_job(tmp_path: Path) -> None:
    spool = Spool.from_settings(Asterisk(spool_dir=tmp_path, user=None))
    assert spool.queued_callfile(JOB) == tmp_path / "outgoing" / f"{JOB}.call"
    assert spool.queued_callfile(JOB, 3) == tmp_path / "outgoing" / f"{JOB}-r3.call"
    assert spool.staged_callfile(JOB) == tmp_path / "faxmail-staging" / f"{JOB}.call"
    assert spool.archived_callfile(JOB, 2) == tmp_path / "outgoing_done" / f"{JOB}-r2.call"
    assert spool.tiff(JOB) == tmp_path / "fax" / f"{JOB}.tif"
    assert spool.partial_tiff(JOB) == tmp_path / "fax" / f".{JOB}.tif.tmp"


def test_problems_name_each_missing_folder(tmp_path: Path) -> None:
    spool = Spool.from_settings(Asterisk(spool_dir=tmp_path, user=None))
    assert spool.problems() == [
        f"{tmp_path / 'outgoing'} does not exist",
        f"{tmp_path / 'faxmail-staging'} does not exist",
        f"{tmp_path / 'fax'} does not exist",
    ]
    for folder in (spool.outgoing, spool.staging, spool.faxes):
        folder.mkdir()
    assert spool.problems() == []


class FlakyStore:
    """Just what Enqueuer.enqueue uses of a job store; set_state fails while `broken`."""

    def __init__(self) -> None:
        self.broken = False
        self.states: list[tuple[str, str, str]] = []

    def admit(self, job: Job, limits: RateLimits, duplicate_window_s: float) -> str:
        return "admitted"

    def get(self, job_id: str) -> Job | None:
        return None

    def set_state(self, job_id: str, state: str, event: str, **detail: object) -> None:
        if self.broken:
            raise StoreUnavailable("disk I/O error")
        self.states.append((job_id, state, event))

    def queue_job(self, job_id: str, not_before: float, **detail: object) -> None:
        self.set_state(job_id, "queued", "spooled")  # as SqliteStore: state and queue row


def a_job(spool: Spool, job_id: str) -> Job:
    return Job(
        id=job_id,
        created=0.0,
        state="queueing",
        sender="alice@example.jp",
        envelope_sender="alice@example.jp",
        author="alice@example.jp",
        reply_to=None,
        subject="",
        number_given="0312345678",
        number_e164="+81312345678",
        number_dialled="0312345678",
        pages=1,
        digest="d",
        message_id="<m@example.jp>",
        proof="dkim",
        dkim_domain="example.jp",
        language="en",
        tiff=str(spool.tiff(job_id)),
        render_seconds=0.0,
        tiff_bytes=1,
    )


def test_unsettled_jobs_are_the_enqueuers_own(tmp_path: Path) -> None:
    spool = Spool.from_settings(Asterisk(spool_dir=tmp_path, user=None))
    for folder in (spool.outgoing, spool.staging, spool.faxes):
        folder.mkdir()
    tiff = tmp_path / "rendered.tif"
    tiff.write_bytes(b"II*\0")
    limits = RateLimits(per_hour=None, per_day=None)
    first_store, other_store = FlakyStore(), FlakyStore()
    first, other = Enqueuer(spool, first_store), Enqueuer(spool, other_store)  # type: ignore[arg-type]
    first_store.broken = True
    with pytest.raises(Refusal) as refused:
        first.enqueue(a_job(spool, "1" * 16), tiff, fax=Fax(), limits=limits)
    assert refused.value.reply == LOCAL_ERROR
    # nothing of that job is left for Asterisk
    assert list(spool.staging.iterdir()) == [] and list(spool.faxes.iterdir()) == []
    other.enqueue(a_job(spool, "2" * 16), tiff, fax=Fax(), limits=limits)
    assert ("1" * 16, "abandoned", "spool-error") not in other_store.states
    first_store.broken = False
    first.enqueue(a_job(spool, "3" * 16), tiff, fax=Fax(), limits=limits)
    assert first_store.states[0] == ("1" * 16, "abandoned", "spool-error")
    assert first_store.states[1:] == [("3" * 16, "queued", "spooled")]
