"""scripts/demo, as `make demo` runs it once its installs are done: the whole gateway on this
machine, one signed fax mail through it, both mails left as files, every page checked; and
Ctrl-C in the middle of the call stops everything it started and removes its temporary state.

About a minute each (the fax is two light pages). Run only these: ``.venv/bin/pytest -q
tests/test_demo.py``.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from infra.asterisk import processes_in
from infra.demo import FAX_ADDRESS, FILES, INBOX, SENDER
from infra.faxpages import compare_pages, tiff_pages

pytestmark = [pytest.mark.e2e, pytest.mark.asterisk, pytest.mark.postfix]

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "scripts" / "demo"
#: The demo's own limit is 420 s for the fax; its start and stop take seconds.
TIMEOUT = 600

UP = re.compile(
    r"^up in \d+ s: Postfix on 127\.0\.0\.1:(?P<smtp>\d+) .* Asterisk 22 \(chroot (?P<ast>\S+)\), "
    r"dnsmasq on 127\.0\.0\.1:(?P<dns>\d+)$",
    re.M,
)


def parse(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def processes_naming(*needles: str) -> list[str]:
    """Command lines of running processes that contain any of ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(needle in argv for needle in needles):
            found.append(argv)
    return found


def assert_all_gone(text: str) -> None:
    """Nothing the demo started is left: its work folder, ports, processes, Asterisk."""
    work = re.search(r"^work folder \(removed at the end\): (\S+)$", text, re.M)
    up = UP.search(text)
    assert work is not None and up is not None, text
    assert not Path(work.group(1)).exists()
    smtp, dns = int(up.group("smtp")), int(up.group("dns"))
    assert smtp != 25  # its own port: the machine's Postfix (if any) is not involved
    assert not listening(smtp)
    assert processes_naming(work.group(1), f"127.0.0.1:{smtp}", f"--port={dns}") == []
    asterisk = Path(up.group("ast"))
    assert not asterisk.exists(), asterisk
    assert processes_in(asterisk / "merged") == []


def test_demo_faxes_and_leaves_both_mails(tmp_path: Path) -> None:
    output = tmp_path / "out"
    proc = subprocess.run(
        [str(DEMO), "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    text = proc.stdout
    assert proc.returncode == 0, text + proc.stderr
    assert text.count("pixel-identical to the rendered TIFF") == 4, text  # 2 mails x 2 pages
    assert re.search(r"^demo done in \d+ s: every page pixel-identical$", text, re.M), text
    decision = re.search(
        rf"^  queued queue_id=\w+ job=(\w+) from={SENDER} proof=dkim "
        rf"number={re.escape(FAX_ADDRESS)} pages=2$",
        text,
        re.M,
    )
    assert decision is not None, text
    for name in FILES:
        assert f"  {(output / name).resolve()}\n" in text, (name, text)

    # The files are what they say, checked again here from the files alone.
    rendered = tiff_pages(output / "rendered.tif")
    assert len(rendered) == 2
    for pdf in ("result-mail.pdf", "received-fax.pdf"):
        checks = compare_pages((output / pdf).read_bytes(), rendered)
        assert [c.problem for c in checks] == [None, None], (pdf, checks)
    result = parse((output / "result-mail.eml").read_bytes())
    assert str(result["Subject"]).startswith("Fax sent: "), result["Subject"]
    assert result["To"] == SENDER
    body = result.get_body(("plain",))
    assert body is not None and f"  Job: {decision.group(1)}\n" in str(body.get_content())
    received = parse((output / "received-mail.eml").read_bytes())
    assert received["To"] == INBOX
    # notify's envelope sender is the From: address (the policy sets no notify.from_address).
    for mail in (result, received):
        assert mail["Return-Path"] == f"<{mail['From'].addresses[0].addr_spec}>", mail["From"]
    assert "faxmail-milter" in (output / "logs" / "faxmail-milter.log").read_text()
    assert_all_gone(text)


def test_ctrl_c_stops_everything_and_keeps_the_output(tmp_path: Path) -> None:
    output = tmp_path / "out"
    # Its own process group, as a terminal's foreground job: Ctrl-C signals the whole group.
    proc = subprocess.Popen(
        [str(DEMO), "--output", str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "waiting for the call" in line:  # the call is being placed now
                break
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = "".join(lines) + rest
    assert proc.returncode == 130, text
    assert f"interrupted: everything the demo started is stopped; kept {output}" in text
    assert (output / "sample.pdf").exists() and (output / "logs").is_dir()
    assert not (output / "result-mail.eml").exists()
    assert_all_gone(text)
