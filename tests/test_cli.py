"""The admin commands, run as an admin would: as processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.constants import FAX_DIGITS as FAX
from infra.dkimkeys import Signer
from infra.dns import DnsServer
from infra.mail import Attachment, build_message
from infra.pdfs import make_encrypted_pdf, make_pdf

BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_policy_check_ok(tmp_path: Path) -> None:
    result = run(str(BIN / "faxmail"), "policy", "check", "etc/policy.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK (3 sender entries" in result.stdout


def test_policy_check_names_key_and_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "senders:\n  - address: a@example.jp\n    proof: [sasl]\nlimits:\n  per_day: x\n"
    )
    result = run(str(BIN / "faxmail"), "policy", "check", str(policy))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any("line 2: senders[0]: " in line and "needs sasl_user" in line for line in lines), (
        lines
    )
    assert any("line 5: limits.per_day: " in line for line in lines), lines


def test_help_teaches() -> None:
    result = run(str(BIN / "faxmail-milter"), "--help")
    assert result.returncode == 0
    for words in ("smtpd_milters", "milter_default_action = tempfail", "SIGHUP", "--settings"):
        assert words in result.stdout
    assert "dry-run" in run(str(BIN / "faxmail"), "--help").stdout


def test_bad_settings_name_the_key(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("socket: inet:1@127.0.0.1\ndns:\n  timeout: never\n")
    result = run(str(BIN / "faxmail-milter"), "--settings", str(settings))
    assert result.returncode == 78
    assert "line 3: dns.timeout" in result.stderr


@pytest.fixture
def dry_settings(tmp_path: Path, dns: DnsServer) -> Path:
    spool = tmp_path / "asterisk"
    for sub in ("outgoing", "faxmail-staging", "fax"):
        (spool / sub).mkdir(parents=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        'fax_address: {domains: [example.jp]}\nsenders:\n  - address: "@example.jp"\n'
    )
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "policy": str(policy),
                "state_dir": str(tmp_path / "state"),
                "dns": {"nameservers": [dns.host], "port": dns.port, "timeout": 2},
                "asterisk": {"spool_dir": str(spool), "user": None},
            }
        )
    )
    return settings


def test_dry_run(tmp_path: Path, dry_settings: Path, dkim_keys: dict[str, Signer]) -> None:
    message = build_message(
        from_addr="alice@example.jp",
        to=[FAX],
        attachments=[Attachment(make_pdf(3), filename="a.pdf")],
    )
    signed = tmp_path / "signed.eml"
    signed.write_bytes(dkim_keys["example.jp"].sign(message))
    unsigned = tmp_path / "unsigned.eml"
    unsigned.write_bytes(message)
    base = [str(BIN / "faxmail"), "dry-run", "--settings", str(dry_settings)]
    envelope = ["--mail-from", "alice@example.jp", "--rcpt", FAX]

    result = run(*base, str(signed), *envelope)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DATA: 250 2.0.0 fax queued" in result.stdout
    assert "pages: 3" in result.stdout

    result = run(*base, str(unsigned), *envelope, "--json")
    assert result.returncode == 1
    verdict = json.loads(result.stdout)
    assert verdict["answers"][-1]["enhanced"] == "5.7.20"

    result = run(
        *base, str(unsigned), "--mail-from", "alice@example.jp", "--rcpt", "fax+110@example.jp"
    )
    assert result.returncode == 1
    assert "RCPT fax+110@example.jp: 550 5.7.1 fax number +81110 is not allowed" in result.stdout
    # Nothing was queued by a dry run.
    assert not list((tmp_path / "asterisk" / "outgoing").iterdir())


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("signed", 0, "fax queued as job"),
        ("unsigned", 77, "550 5.7.20"),
        ("encrypted", 65, "password-protected"),
        ("premium number", 77, "premium rate"),
        ("bad number", 65, "553 5.1.3"),
        ("dns down", 75, "451 4.7.5"),
    ],
)
def test_sendfax_pipe_mode(
    case: str,
    code: int,
    words: str,
    tmp_path: Path,
    dry_settings: Path,
    dns: DnsServer,
    dkim_keys: dict[str, Signer],
) -> None:
    number = {"premium number": "0990123456", "bad number": "12ab"}.get(case, "0312345678")
    pdf = make_encrypted_pdf() if case == "encrypted" else make_pdf(1)
    message = build_message(
        from_addr="alice@example.jp",
        to=[f"fax+{number}@example.jp"],
        attachments=[Attachment(pdf, filename="a.pdf")],
    )
    if case != "unsigned":
        message = dkim_keys["example.jp"].sign(message)
    if case == "dns down":
        dns.stop()
    argv = [str(BIN / "faxmail"), "sendfax", "--settings", str(dry_settings)]
    argv += ["--sender", "alice@example.jp", "fax-out", "trunk1", number]
    result = subprocess.run(argv, input=message, capture_output=True, timeout=120, check=False)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == code, output
    assert words in output
    calls = list((tmp_path / "asterisk" / "outgoing").glob("*.call"))
    if code == 0:
        (call,) = calls
        text = call.read_text()
        assert "Context: fax-out" in text and "Channel: PJSIP/0312345678@trunk1" in text
    else:
        assert calls == []
