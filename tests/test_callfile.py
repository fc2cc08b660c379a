"""callfile.py: allow-listed rendering, pbx_spool-faithful parsing; spool.py: atomic spooling."""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest

from faxmail.asterisk.callfile import CallFile, parse_callfile, render_callfile
from faxmail.asterisk.spool import clean_staging, spool_callfile


def sample(**changes: object) -> CallFile:
    values: dict[str, object] = {
        "channel": "PJSIP/0301234567@trunk",
        "context": "faxmail-out",
        "extension": "send",
        "caller_id": '"Fax Office" <4930123456>',
        "variables": {
            "FAXMAIL_JOB": "j20240101-abc",
            "FAXFILE": "/var/spool/faxmail/faxes/j20240101-abc.tif",
            "FAXNUMBER": "0301234567",
        },
    }
    values.update(changes)
    return CallFile(**values)  # type: ignore[arg-type]


EXPECTED = (
    b"Channel: PJSIP/0301234567@trunk\n"
    b'CallerID: "Fax Office" <4930123456>\n'
    b"MaxRetries: 2\n"
    b"RetryTime: 300\n"
    b"WaitTime: 45\n"
    b"Context: faxmail-out\n"
    b"Extension: send\n"
    b"Priority: 1\n"
    b"Archive: yes\n"
    b"Setvar: FAXFILE=/var/spool/faxmail/faxes/j20240101-abc.tif\n"
    b"Setvar: FAXMAIL_JOB=j20240101-abc\n"
    b"Setvar: FAXNUMBER=0301234567\n"
)


# --------------------------------------------------------------------------- render


def test_renders_exactly_the_expected_lines() -> None:
    assert render_callfile(sample()) == EXPECTED


def test_optional_lines() -> None:
    rendered = render_callfile(
        sample(
            channel="Local/rx@fax-rx",
            caller_id=None,
            archive=False,
            variables={},
            priority=2,
            max_retries=0,
            retry_time=60,
            wait_time=30,
        )
    )
    assert rendered == (
        b"Channel: Local/rx@fax-rx\nMaxRetries: 0\nRetryTime: 60\nWaitTime: 30\n"
        b"Context: faxmail-out\nExtension: send\nPriority: 2\nArchive: no\n"
    )


def test_empty_caller_name_as_enqueue_sends_it() -> None:
    assert b'CallerID: "" <4930123456>\n' in render_callfile(sample(caller_id='"" <4930123456>'))


def test_parse_gives_back_what_was_rendered() -> None:
    cf = sample()
    assert parse_callfile(render_callfile(cf)) == [
        ("Channel", cf.channel),
        ("CallerID", '"Fax Office" <4930123456>'),
        ("MaxRetries", "2"),
        ("RetryTime", "300"),
        ("WaitTime", "45"),
        ("Context", "faxmail-out"),
        ("Extension", "send"),
        ("Priority", "1"),
        ("Archive", "yes"),
        ("Setvar", "FAXFILE=/var/spool/faxmail/faxes/j20240101-abc.tif"),
        ("Setvar", "FAXMAIL_JOB=j20240101-abc"),
        ("Setvar", "FAXNUMBER=0301234567"),
    ]


# Every ASCII character plus a few Unicode ones that look harmless or invisible.
CHARACTERS = [chr(c) for c in range(128)] + ["é", "\u2028", "\u202e", "\uff1b", "\U0001f600"]
ALPHANUMERIC = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
ALLOWED = {
    "channel": ALPHANUMERIC | set("/@+._:-"),
    "context": ALPHANUMERIC | set("_+-"),
    "extension": ALPHANUMERIC | set("_+-"),
    "variable": ALPHANUMERIC | set("/._:+@=-"),
    "caller_id": ALPHANUMERIC | set(" ._-"),
}


def forbidden(field: str) -> list[str]:
    return [c for c in CHARACTERS if c not in ALLOWED[field]]


@pytest.mark.parametrize("field", ["channel", "context", "extension"])
def test_every_forbidden_character_in_dialplan_fields(field: str) -> None:
    for char in forbidden(field):
        with pytest.raises(ValueError, match=field):
            render_callfile(sample(**{field: f"ab{char}cd"}))


def test_every_forbidden_character_in_variable_values() -> None:
    for char in forbidden("variable"):
        if char == " ":
            continue  # a single inner space is allowed: see the next test
        with pytest.raises(ValueError, match="variable FAXFILE"):
            render_callfile(sample(variables={"FAXFILE": f"/x/{char}y.tif"}))


def test_every_forbidden_character_in_the_caller_name() -> None:
    for char in forbidden("caller_id"):
        with pytest.raises(ValueError, match="caller_id"):
            render_callfile(sample(caller_id=f'"a{char}b" <123>'))


@pytest.mark.parametrize(
    "caller_id",
    [
        "<123>",
        '"name" 123',
        '"name" <12a3>',
        '"name" <+49301>',
        '"name" <>',
        '"name"  <123>',
        '"name" <123> ',
        '"na"me" <123>',
        '"name" <123>\n',
        '"name" <123>;x',
        '"' + "a" * 41 + '" <123>',
        '"a" <' + "1" * 21 + ">",
        "",
    ],
)
def test_malformed_caller_ids(caller_id: str) -> None:
    with pytest.raises(ValueError, match="caller_id"):
        sample(caller_id=caller_id)


@pytest.mark.parametrize(
    "name",
    ["faxfile", "1FAX", "_FAX", "FAX-FILE", "FAX FILE", "FAX=X", "FAX;", "", "F" * 65, "FAXÉ"],
)
def test_bad_variable_names(name: str) -> None:
    with pytest.raises(ValueError, match="variable name"):
        sample(variables={name: "x"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("channel", ""),
        ("channel", "P" * 201),
        ("context", ""),
        ("context", "c" * 80),
        ("extension", ""),
        ("channel", " PJSIP/1"),
        ("channel", "PJSIP/1 "),
    ],
)
def test_empty_leading_space_and_overlong_values(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        sample(**{field: value})


def test_variable_value_length_and_leading_space() -> None:
    assert (
        len(max(render_callfile(sample(variables={"V": "a" * 900})).split(b"\n"), key=len)) < 1024
    )
    assert b"Setvar: V=ACME Corp Tokyo\n" in render_callfile(
        sample(variables={"V": "ACME Corp Tokyo"})
    )
    for value in ("a" * 901, " a", "a ", "a\tb", "a  b", "a ;b", "a #b"):
        with pytest.raises(ValueError, match="variable V"):
            sample(variables={"V": value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", 0),
        ("priority", 1001),
        ("max_retries", -1),
        ("max_retries", 101),
        ("retry_time", 0),
        ("retry_time", 86401),
        ("wait_time", 0),
        ("wait_time", 601),
        ("wait_time", True),
        ("priority", "1"),
        ("retry_time", 300.0),
    ],
)
def test_numbers_are_bounded_integers(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        sample(**{field: value})


def test_archive_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="archive"):
        sample(archive="yes")


def test_non_string_values_are_refused() -> None:
    with pytest.raises(ValueError, match="channel"):
        sample(channel=b"PJSIP/1")
    with pytest.raises(ValueError, match="variable X"):
        sample(variables={"X": 5})


def test_variables_cannot_be_changed_after_the_check() -> None:
    variables = {"FAXFILE": "/ok.tif"}
    cf = sample(variables=variables)
    variables["FAXFILE"] = "/x;System(id)"
    variables["EVIL"] = "a b"
    assert b"Setvar: FAXFILE=/ok.tif\n" in render_callfile(cf)
    assert b"EVIL" not in render_callfile(cf)
    with pytest.raises(TypeError):
        cf.variables["X"] = "1"  # type: ignore[index]


def test_render_rechecks_a_tampered_value() -> None:
    cf = sample()
    object.__setattr__(cf, "context", "ctx;x")
    with pytest.raises(ValueError, match="context"):
        render_callfile(cf)
    with pytest.raises(ValueError, match="extension"):
        dataclasses.replace(sample(), extension="s\n")


# --------------------------------------------------------------------------- parse


def test_parse_follows_pbx_spool_comment_rules() -> None:
    data = (
        b"# a comment line\n"
        b"Channel: Local/1@x ; trailing comment\n"
        b"Setvar: A=semi\\;colon\n"
        b"Setvar: B=hash#kept\n"
        b"Setvar: C=hash #dropped\n"
        b"  \t \n"
        b"no colon here\n"
        b"Context:   spaced   \r\n"
        b"Setvar: LONG=" + b"x" * 1100 + b"\n"
        b";Extension: commented\n"
        b"Extension:s"
    )
    assert parse_callfile(data) == [
        ("Channel", "Local/1@x"),
        ("Setvar", "A=semi;colon"),
        ("Setvar", "B=hash#kept"),
        ("Setvar", "C=hash"),
        ("Context", "spaced"),
        ("Extension", "s"),
    ]


# --------------------------------------------------------------------------- spool


@pytest.fixture
def spool(tmp_path: Path) -> tuple[Path, Path]:
    staging, outgoing = tmp_path / "staging", tmp_path / "outgoing"
    staging.mkdir()
    outgoing.mkdir()
    return staging, outgoing


def other_gid() -> int:
    if os.geteuid() == 0:
        return 4242
    others = [g for g in os.getgroups() if g != os.getegid()]
    if not others:
        pytest.skip("needs root or a supplementary group to test fchown")
    return others[0]


def test_spool_writes_owned_file_atomically(spool: tuple[Path, Path]) -> None:
    staging, outgoing = spool
    gid = other_gid()
    path = spool_callfile(
        EXPECTED,
        staging_dir=staging,
        outgoing_dir=outgoing,
        name="j1.call",
        owner=(os.getuid(), gid),
    )
    assert path == outgoing / "j1.call"
    assert path.read_bytes() == EXPECTED
    info = path.stat()
    assert (info.st_uid, info.st_gid) == (os.getuid(), gid)
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert info.st_nlink == 1
    assert list(staging.iterdir()) == []
    assert list(outgoing.iterdir()) == [path]


def test_spool_without_owner_keeps_ours(spool: tuple[Path, Path]) -> None:
    staging, outgoing = spool
    path = spool_callfile(
        b"x\n", staging_dir=staging, outgoing_dir=outgoing, name="j2.call", owner=None
    )
    assert (path.stat().st_uid, path.stat().st_gid) == (os.geteuid(), os.getegid())
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "../x.call", "a/b", "a b", "a;b", "é"])
def test_spool_refuses_bad_names(spool: tuple[Path, Path], name: str) -> None:
    staging, outgoing = spool
    with pytest.raises(ValueError, match="name"):
        spool_callfile(b"x", staging_dir=staging, outgoing_dir=outgoing, name=name, owner=None)
    assert list(staging.iterdir()) == list(outgoing.iterdir()) == []


def test_spool_never_replaces_a_queued_call_file(spool: tuple[Path, Path]) -> None:
    staging, outgoing = spool
    (outgoing / "j3.call").write_bytes(b"original")
    with pytest.raises(FileExistsError):
        spool_callfile(
            b"new", staging_dir=staging, outgoing_dir=outgoing, name="j3.call", owner=None
        )
    assert (outgoing / "j3.call").read_bytes() == b"original"
    assert list(staging.iterdir()) == []


def test_spool_removes_the_staging_file_on_error(spool: tuple[Path, Path]) -> None:
    staging, outgoing = spool
    with pytest.raises((OverflowError, OSError)):
        spool_callfile(
            b"x", staging_dir=staging, outgoing_dir=outgoing, name="j4.call", owner=(-5, -5)
        )
    assert list(staging.iterdir()) == list(outgoing.iterdir()) == []


def test_spool_leftover_in_staging_is_refused_not_reused(spool: tuple[Path, Path]) -> None:
    staging, outgoing = spool
    (staging / "j5.call").write_bytes(b"half")
    with pytest.raises(FileExistsError):
        spool_callfile(b"x", staging_dir=staging, outgoing_dir=outgoing, name="j5.call", owner=None)
    assert clean_staging(staging) == 1
    spool_callfile(b"x", staging_dir=staging, outgoing_dir=outgoing, name="j5.call", owner=None)


def test_spool_across_filesystems_is_an_error(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm")
    if shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm and the test directory share a filesystem")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        with pytest.raises(OSError) as caught:
            spool_callfile(
                b"x", staging_dir=Path(other), outgoing_dir=tmp_path, name="j6.call", owner=None
            )
        assert caught.value.errno == errno.EXDEV
        assert "different filesystems" in str(caught.value)
        assert list(Path(other).iterdir()) == list(tmp_path.iterdir()) == []


def test_clean_staging(tmp_path: Path) -> None:
    (tmp_path / "a.call").write_bytes(b"half")
    (tmp_path / ".b").write_bytes(b"")
    (tmp_path / "link").symlink_to("/etc/passwd")
    (tmp_path / "sub").mkdir()
    assert clean_staging(tmp_path) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]
    assert Path("/etc/passwd").exists()
    assert clean_staging(tmp_path) == 0
