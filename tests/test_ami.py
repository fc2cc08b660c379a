"""The AMI client and AmiDialer against a tiny fake manager (tests/infra/fakeami.py).

Framing (banner, CRLF headers, a blank line per message, events skipped), login refused,
Originate queued or refused, a host that hangs up or goes silent after the Originate (which
may ring: never given back), a host that is not there, and the values that must never reach
an AMI line (CR/LF, a comma in a Variable, a secret with a newline).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxmail.asterisk.ami import (
    AmiConnection,
    AmiError,
    check_header,
    originate,
    originate_headers,
    render_action,
)
from faxmail.asterisk.callfile import CallFile
from faxmail.asterisk.dialer import AmiDialer, DialError, StagedCall, remote_call
from faxmail.core.asteriskhosts import AmiHost
from faxmail.core.settings import Settings
from infra.fakeami import FakeAmi, Mode
from infra.tlscert import self_signed

CALL = CallFile(
    channel="PJSIP/0312345678@trunk",
    context="faxmail-send",
    extension="send",
    max_retries=0,
    wait_time=30,
    caller_id='"" <81312345678>',
    variables={"FAXMAIL_JOB": "0123abcd0123abcd", "FAXFILE": "/s/fax/0123abcd0123abcd.tif"},
)


@pytest.fixture
def ami() -> Iterator[FakeAmi]:
    server = FakeAmi()
    yield server
    server.close()


def host_config(server: FakeAmi, tmp_path: Path, secret: str = "s3cret\n") -> AmiHost:
    secret_file = tmp_path / "ami.secret"
    secret_file.write_text(secret)
    return AmiHost(
        ami=server.endpoint,
        username="faxmail",
        secret_file=secret_file,
        timeout_s=1,
        fax_dir=Path("/var/spool/asterisk/fax"),
    )


def test_an_action_is_crlf_lines_and_a_blank_line() -> None:
    data = render_action("Originate", "id-1", originate_headers(CALL))
    assert data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1
    lines = data.decode().split("\r\n")[:-2]
    assert lines[:2] == ["Action: Originate", "ActionID: id-1"]
    assert "Timeout: 30000" in lines and "Async: true" in lines
    assert 'CallerID: "" <81312345678>' in lines
    assert [line for line in lines if line.startswith("Variable: ")] == [
        "Variable: FAXFILE=/s/fax/0123abcd0123abcd.tif",
        "Variable: FAXMAIL_JOB=0123abcd0123abcd",
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Channel", "PJSIP/1\r\nAction: Command"),
        ("Channel", "x\n"),
        ("Channel", "x\rCommand: core stop now"),
        ("Secret", "a\x00b"),
        ("Bad Key", "x"),
        ("Key:", "x"),
        ("Channel", " leading"),
        ("Channel", "é"),
    ],
)
def test_no_value_can_start_a_line(key: str, value: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        check_header(key, value)
    with pytest.raises(ValueError, match="not allowed"):
        render_action("Originate", "id", [(key, value)])


def test_a_variable_with_a_comma_is_refused() -> None:
    # Asterisk splits a Variable header at commas: "A=1,B=2" would set B.
    class Loose(CallFile):
        def __post_init__(self) -> None:  # skip the call file's own check, to reach AMI's
            pass

    loose = Loose(channel="Local/1@x", context="c", extension="e", variables={"A": "1,B=2"})
    with pytest.raises(ValueError, match="comma"):
        originate_headers(loose)


def test_login_and_originate(ami: FakeAmi) -> None:
    with AmiConnection.open(ami.address, "faxmail", "s3cret", timeout=2, name="pbx1") as conn:
        originate(conn, CALL, "faxmail-job-r1-abc")
    (action,) = ami.originates()
    assert ("ActionID", "faxmail-job-r1-abc") in action
    assert ("Channel", "PJSIP/0312345678@trunk") in action
    challenge, login = ami.actions[0], ami.actions[1]
    assert challenge[0] == ("Action", "Challenge") and ("AuthType", "MD5") in challenge
    assert login[0] == ("Action", "Login") and ("Events", "off") in login
    assert all(key != "Secret" for key, _ in login)  # never the secret itself
    assert b"s3cret" not in b"".join(ami.raw)


def test_a_wrong_secret_is_refused(ami: FakeAmi) -> None:
    with pytest.raises(AmiError, match="login as faxmail refused") as raised:
        AmiConnection.open(ami.address, "faxmail", "wrong", timeout=2, name="pbx1")
    assert not raised.value.maybe_done
    assert ami.originates() == []


def test_a_host_that_is_not_there(tmp_path: Path) -> None:
    server = FakeAmi()
    address = server.address
    server.close()  # nobody listens on that port now
    with pytest.raises(AmiError, match="cannot connect") as raised:
        AmiConnection.open(address, "faxmail", "s3cret", timeout=2, name="pbx1")
    assert not raised.value.maybe_done


def test_a_host_without_a_banner_times_out(ami: FakeAmi) -> None:
    ami.mode = "mute"
    with pytest.raises(AmiError, match="no answer in time"):
        AmiConnection.open(ami.address, "faxmail", "s3cret", timeout=0.3, name="pbx1")


@pytest.mark.parametrize(
    ("mode", "maybe_placed"),
    [
        ("mute", False),
        ("slow-login", False),
        ("refuse-originate", False),
        ("close-after-originate", True),
        ("silent-after-originate", True),
    ],
)
def test_the_dialer_says_whether_the_call_may_ring(
    ami: FakeAmi, tmp_path: Path, mode: Mode, maybe_placed: bool
) -> None:
    ami.mode = mode
    dialer = AmiDialer("pbx1", host_config(ami, tmp_path))
    staged = dialer.stage("0123abcd0123abcd", 2, CALL)
    with pytest.raises(DialError) as raised:
        dialer.dial(staged)
    assert raised.value.host_down and raised.value.maybe_placed is maybe_placed


def test_the_dialer_sends_what_the_call_file_would_plus_the_fetch(
    ami: FakeAmi, tmp_path: Path
) -> None:
    dialer = AmiDialer("pbx1", host_config(ami, tmp_path))
    staged = dialer.stage("0123abcd0123abcd", 2, CALL)
    assert isinstance(staged, StagedCall) and staged.path is None
    dialer.dial(staged)
    (action,) = ami.originates()
    variables = dict(v.split("=", 1) for k, v in action if k == "Variable")
    assert variables == {
        "FAXMAIL_JOB": "0123abcd0123abcd",
        "FAXFILE": "/var/spool/asterisk/fax/0123abcd0123abcd.tif",  # that host's own fax dir
        "FAXMAIL_FETCH": "yes",
        "AST_OUTGOING_ATTEMPT": "1",
    }
    action_id = dict(action)["ActionID"]
    assert action_id.startswith("faxmail-0123abcd0123abcd-r2-")


def test_a_secret_that_would_break_the_line_is_refused(ami: FakeAmi, tmp_path: Path) -> None:
    config = host_config(ami, tmp_path, secret="s3cret\r\n")
    (tmp_path / "ami.secret").write_bytes(b"s3\rcret\n")
    dialer = AmiDialer("pbx1", config)
    with pytest.raises(DialError, match=r"asterisk_hosts\.pbx1\.secret_file"):
        dialer.dial(dialer.stage("0123abcd0123abcd", 1, CALL))
    assert ami.actions == []  # nothing was sent, not even the login


def test_a_missing_secret_file_names_its_key(ami: FakeAmi, tmp_path: Path) -> None:
    config = host_config(ami, tmp_path).model_copy(update={"secret_file": tmp_path / "none"})
    dialer = AmiDialer("pbx1", config)
    with pytest.raises(DialError, match=r"asterisk_hosts\.pbx1\.secret_file"):
        dialer.dial(dialer.stage("0123abcd0123abcd", 1, CALL))


def test_the_remote_call_names_only_its_own_fax_dir() -> None:
    remote = remote_call(CALL, "0123abcd0123abcd", Path("/var/spool/asterisk/fax"))
    assert remote.variables["FAXFILE"] == "/var/spool/asterisk/fax/0123abcd0123abcd.tif"
    assert CALL.variables["FAXFILE"] == "/s/fax/0123abcd0123abcd.tif"  # unchanged


@pytest.mark.parametrize(
    ("hosts", "key", "text"),
    [
        ({"pbx1": {"ami": "10.0.0.5", "username": "u", "secret_file": "/s"}}, "ami", "host:port"),
        ({"pbx1": {"ami": "h:99999", "username": "u", "secret_file": "/s"}}, "ami", "host:port"),
        ({"pbx1": {"ami": "h:5038", "username": "u\r\n", "secret_file": "/s"}}, "username", ""),
        ({"pbx1": {"ami": "h:5038", "username": "u"}}, "secret_file", "Field required"),
        (
            {"pbx1": {"ami": "h:5038", "username": "u", "secret_file": "/s", "fax_dir": "/a-b"}},
            "fax_dir",
            "letters, digits",
        ),
        ({"local": {"ami": "h:5038", "username": "u", "secret_file": "/s"}}, "", "own spool"),
        ({"a b": {"ami": "h:5038", "username": "u", "secret_file": "/s"}}, "", "host name"),
    ],
)
def test_host_settings_errors_name_the_key(hosts: object, key: str, text: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as raised:
        Settings.model_validate({"asterisk_hosts": hosts})
    (error,) = raised.value.errors()
    where = ".".join(str(part) for part in error["loc"])
    assert where.startswith("asterisk_hosts")
    assert where.endswith(key) and text in str(raised.value)


@pytest.fixture
def tls_ami(tmp_path: Path) -> Iterator[tuple[FakeAmi, Path]]:
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = FakeAmi(tls=context)
    yield server, cert
    server.close()


def test_the_dialer_speaks_tls_and_checks_the_certificate(
    tls_ami: tuple[FakeAmi, Path], tmp_path: Path
) -> None:
    server, cert = tls_ami
    plain = host_config(server, tmp_path)
    dialer = AmiDialer("pbx1", plain.model_copy(update={"tls": True, "ca_file": cert}))
    dialer.dial(dialer.stage("0123abcd0123abcd", 1, CALL))
    (action,) = server.originates()
    assert ("Channel", "PJSIP/0312345678@trunk") in action
    # A certificate nobody vouches for (the system's CAs do not know ours): no call.
    untrusted = AmiDialer("pbx1", plain.model_copy(update={"tls": True}))
    with pytest.raises(DialError, match=r"TLS with 127\.0\.0\.1") as raised:
        untrusted.dial(untrusted.stage("0123abcd0123abcd", 2, CALL))
    assert raised.value.host_down and not raised.value.maybe_placed
    # A CA file that is not there: named by its key.
    missing = AmiDialer("pbx1", plain.model_copy(update={"tls": True, "ca_file": tmp_path / "no"}))
    with pytest.raises(DialError, match=r"asterisk_hosts\.pbx1\.ca_file"):
        missing.dial(missing.stage("0123abcd0123abcd", 3, CALL))
    assert len(server.originates()) == 1
