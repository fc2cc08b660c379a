"""Hostile caller ids, station ids and fax errors: through the shipped dialplan they arrive as
harmless text in a mail; passed raw as arguments, notify refuses them. Nothing is executed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import attach_log
from faxmail.notify.main import main
from infra.postfix import PostfixInstance
from test_notify_support import NotifyEnv, body_text, fax_tiff, parse

HOSTILE = [
    "1;touch {m}",
    "$(touch {m})",
    "`touch {m}`",
    '"; touch {m}; "',
    "'; touch {m}; '",
    "x\ntouch {m}",
    "\\x22;touch {m}",
    "1\\;touch${{IFS}}{m}",
    "|touch {m}",
    "&& touch {m} #",
]


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """main() in-process sets up notify's logging; give pytest its own back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("faxmail", "faxmail_notify")}
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def env(request: pytest.FixtureRequest, workdir: Path) -> NotifyEnv:
    notify_env = NotifyEnv(workdir / "env", 1)  # port 1: these tests mail through Postfix only
    attach_log(request, "faxmail-notify log", notify_env.log)
    return notify_env


@pytest.mark.postfix
def test_hostile_values_through_the_dialplan_are_only_text(
    env: NotifyEnv, postfix: PostfixInstance, workdir: Path
) -> None:
    env.write_settings(port=postfix.port)
    markers = [workdir / f"pwned-{n}" for n in range(len(HOSTILE))]
    payloads = [h.format(m=m) for h, m in zip(HOSTILE, markers, strict=True)]
    fax_tiff(env.inbox / "50.1.tif")
    # Everything a caller or the far end chooses is hostile; what Asterisk itself sets
    # (FAXSTATUS, FAXPAGES...) is not.
    channel = {
        "UNIQUEID": "50.1",
        "FAXMAIL_FILE": "50.1.tif",
        "FAXMAIL_DID": "0312345678;" + payloads[0],  # as if [faxmail-incoming] had no FILTER
        "CALLERID(num)": payloads[0],
        "CALLERID(name)": payloads[1],
        "REMOTESTATIONID": payloads[2],
        "FAXERROR": payloads[3],
        "FAXSTATUSSTRING": "\n".join(payloads[4:]),
        "FAXSTATUS": "SUCCESS",
        "FAXPAGES": "1",
    }
    ran = env.dialplan.run("faxmail-receive", "h", channel)
    arguments = ran.line.split(" received ", 1)[1]
    assert not set(arguments) & set(";$`|&'\"\\\n<>(){}*?!#~"), arguments
    assert ran.code == 0, (ran, env.log())
    # The DID kept only its digits (the marker path's digits among them): no route, so
    # the fax goes to inbound.default.
    (raw,) = postfix.wait_for_delivery("fax-inbox@example.jp")
    text = body_text(parse(raw))
    for payload in payloads[:5]:  # (the joined rest is cut at 200 characters)
        assert " ".join(payload.split()) in text  # shown as text, on one line
    assert not any(m.exists() for m in markers)


@pytest.mark.postfix
def test_hostile_station_id_in_a_result_mail(
    env: NotifyEnv, postfix: PostfixInstance, workdir: Path
) -> None:
    env.write_settings(port=postfix.port)
    marker = workdir / "pwned"
    job = env.add_job()
    channel = {
        "FAXMAIL_JOB": job.id,
        "FAXSTATUS": "FAILED",
        "FAXERROR": f"$(touch {marker})",
        "FAXSTATUSSTRING": f"`touch {marker}`\nX-Injected: yes",
        "REMOTESTATIONID": f"1;touch {marker}",
    }
    assert env.dialplan.run("faxmail-send", "h", channel).code == 0
    (raw,) = postfix.wait_for_delivery("alice@example.jp")
    mail = parse(raw)
    assert "X-Injected" not in mail  # a newline in a value never starts a header
    assert f"$(touch {marker})" in body_text(mail)
    assert not marker.exists()


OPTIONS = [
    ("sent", "--job"),
    ("sent", "--status"),
    ("sent", "--pages"),
    ("sent", "--station"),
    ("sent", "--error"),
    ("sent", "--resolution"),
    ("sent", "--mode"),
    ("sent", "--round"),
    ("unanswered", "--reason"),
    ("received", "--tiff"),
    ("received", "--did"),
    ("received", "--caller"),
    ("received", "--caller-name"),
    ("received", "--call"),
]


@pytest.mark.parametrize(("command", "option"), OPTIONS)
def test_raw_hostile_arguments_are_refused(
    env: NotifyEnv, workdir: Path, command: str, option: str
) -> None:
    base = {
        "sent": ["--job=0123456789abcdef", "--status=SUCCESS"],
        "unanswered": ["--job=0123456789abcdef", "--attempt=1"],
        "received": ["--status=SUCCESS"],
    }[command]
    marker = workdir / "pwned"
    for hostile in HOSTILE:
        value = hostile.format(m=marker)
        argv = [f"--settings={env.settings_path}", command, *base, f"{option}={value}"]
        assert main(argv) == 65, (option, value)
    assert not marker.exists()
    assert env.spooled() == []


def test_refusals_as_a_process(env: NotifyEnv, workdir: Path) -> None:
    marker = workdir / "pwned"
    ran = env.notify("received", "--status=SUCCESS", f"--caller=$(touch {marker})")
    assert ran.code == 65 and "not base64" in ran.stderr
    ran = env.notify("received", "--status=SUCCESS", "--tiff=../../etc/passwd")
    assert ran.code == 65
    ran = env.notify("sent", "--job=0123456789abcdef", "--status=SUCCESS", "extra;touch")
    assert ran.code == 64  # usage: no positional arguments
    assert not marker.exists()


def test_symlink_in_the_inbox_is_refused(env: NotifyEnv, workdir: Path) -> None:
    secret = workdir / "secret.txt"
    secret.write_text("not for mail")
    link = env.inbox / "60.1.tif"
    link.symlink_to(secret)
    ran = env.notify("received", "--status=SUCCESS", "--call=60.1", "--tiff=60.1.tif")
    assert ran.code == 65, ran
    assert link.is_symlink() and secret.read_text() == "not for mail"
    assert env.spooled() == []
