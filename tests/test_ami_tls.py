"""AMI over TLS against a real Asterisk 22 (manager.conf tlsenable): the dialer's Originate
goes through, and a certificate the settings do not trust stops it before the login."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from faxmail.asterisk.dialer import AmiDialer, DialError
from faxmail.core.asteriskhosts import AmiHost
from infra.asterisk import StartAsterisk, manager_conf
from infra.net import free_port
from infra.tlscert import self_signed
from test_ami import CALL as FAKE_MANAGER_CALL

pytestmark = [pytest.mark.asterisk]

USER, SECRET = "faxmail", "tls-s3cret"
EXTENSIONS = (
    "[general]\n[faxmail-send]\n"
    "exten => _X.,1,Answer()\nsame => n,Hangup()\n"
    "exten => send,1,Hangup()\n"
)
CALL = replace(FAKE_MANAGER_CALL, channel="Local/0312345678@faxmail-send")  # answered here


def test_originate_over_tls_and_an_untrusted_certificate(
    start_asterisk: StartAsterisk, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    plain_port, tls_port = free_port(), free_port()
    conf = manager_conf(plain_port, USER, SECRET, tls_port=tls_port, tls_files="ami")
    ast = start_asterisk(
        files={
            "extensions.conf": EXTENSIONS,
            "manager.conf": conf,
            "ami-cert.pem": cert.read_text(),
            "ami-key.pem": key.read_text(),
        },
        PROBE_PORT=0,
    )
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    config = AmiHost(
        ami=f"127.0.0.1:{tls_port}",
        username=USER,
        secret_file=secret_file,
        tls=True,
        ca_file=cert,
    )
    dialer = AmiDialer("pbx-tls", config)
    mark = ast.log_mark()
    dialer.dial(dialer.stage("0123abcd0123abcd", 1, CALL))
    # Asterisk dials what the dialer asked for: the Local channel runs its extension
    ast.wait_for_log(r"Executing \[0312345678@faxmail-send:1\]", timeout=30, since=mark)

    untrusted = AmiDialer("pbx-tls", config.model_copy(update={"ca_file": None}))
    with pytest.raises(DialError, match="TLS with") as raised:
        untrusted.dial(untrusted.stage("0123abcd0123abcd", 2, CALL))
    assert raised.value.host_down and not raised.value.maybe_placed
