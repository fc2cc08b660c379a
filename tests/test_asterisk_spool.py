"""asterisk/spool.py: every name faxmail gives a file in Asterisk's spool, from one place."""

from __future__ import annotations

from pathlib import Path

from faxmail.asterisk.spool import (
    CALLFILES,
    PARTIAL_TIFFS,
    Spool,
    callfile_name,
    partial_tiff_name,
    tiff_name,
)
from faxmail.core.settings import Asterisk

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
