"""How notify hands mail over (SMTP with STARTTLS or implicit TLS and AUTH, the sendmail
command) and the seed-compatible `faxmail-notify mail`, all against a real Postfix."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import attach_log
from infra.net import free_port
from infra.postfix import PostfixInstance
from infra.protocols import MakePostfix
from test_notify_dialplan import decode_escapes, substitute
from test_notify_support import NOTIFY, NotifyEnv, attachments, body_text, fax_tiff, parse

pytestmark = pytest.mark.postfix

TO = "sales@example.jp"


@pytest.fixture
def env(request: pytest.FixtureRequest, workdir: Path) -> NotifyEnv:
    notify_env = NotifyEnv(workdir / "env", 1)
    attach_log(request, "faxmail-notify log", notify_env.log)
    return notify_env


# --- the seed's sendmail.py interface -----------------------------------------------------

# The seed's receive h extension, verbatim but for the program's path.
SEED_LINES = [
    "System(/usr/local/bin/sendmail.py ${TOADDR} -f \"${FROMADDR}\" -a ${FAXFILE}"
    " -s \"Fax Received from ${CALLERID(num)}\")",
    "System(/usr/local/bin/sendmail.py \"${TOADDR}\" -f \"${FROMADDR}\" -a ${FAXFILE}"
    " -s \"[FAILED] Fax Received from ${CALLERID(num)}\""
    " -b \"STATUS: ${FAXSTATUS}\\nERROR: ${FAXERROR}\\n\\n\")",
]  # fmt: skip


def test_seed_dialplan_switches_by_changing_one_path(
    env: NotifyEnv, postfix: PostfixInstance
) -> None:
    env.write_settings(port=postfix.port)
    tiff = fax_tiff(env.inbox / "seed.tif", ["fine", "standard"])
    program = f"{NOTIFY} --settings={env.settings_path} mail"
    channel = {
        "TOADDR": TO,
        "FROMADDR": "Fax Agent <fax@example.jp>",
        "FAXFILE": str(tiff),
        "CALLERID(num)": "0398765432",
        "FAXSTATUS": "FAILED",
        "FAXERROR": "RX_TIMEOUT",
    }
    for line in SEED_LINES:
        command = decode_escapes(substitute(line[len("System(") : -1], channel))
        command = command.replace("/usr/local/bin/sendmail.py", program)
        result = subprocess.run(["/bin/sh", "-c", command], capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr
    first, second = (parse(raw) for raw in postfix.wait_for_delivery(TO, 2))
    assert first["Subject"] == "Fax Received from 0398765432"
    assert str(first["From"]) == "Fax Agent <fax@example.jp>"
    assert first["Auto-Submitted"] == "auto-generated"
    (name, pdf), = attachments(first).items()  # fmt: skip
    assert name == "seed.pdf" and pdf.startswith(b"%PDF")
    assert second["Subject"] == "[FAILED] Fax Received from 0398765432"
    assert body_text(second).startswith("STATUS: FAILED\nERROR: RX_TIMEOUT\n")
    assert tiff.exists()  # the seed's dialplan owns its files


def test_mail_with_cc_escapes_and_a_pdf(env: NotifyEnv, postfix: PostfixInstance) -> None:
    env.write_settings(port=postfix.port)
    document = env.root / "見積書.pdf"
    document.write_bytes(b"%PDF-1.4\n%%EOF\n")
    ran = env.notify(
        "mail", TO, "-c", "boss@other.example", "-s", "件名のテスト", "-b", r"line 1\nline 2",
        "-a", str(document),
    )  # fmt: skip
    assert ran.code == 0, ran
    mail = parse(postfix.wait_for_delivery("boss@other.example")[0])
    assert mail["Subject"] == "件名のテスト"
    assert body_text(mail) == "line 1\nline 2\n"
    assert attachments(mail) == {"見積書.pdf": b"%PDF-1.4\n%%EOF\n"}
    assert postfix.wait_for_delivery(TO)
    assert env.notify("mail", "not an address").code == 65
    assert env.notify("mail", TO, "-a", str(env.root / "missing.pdf")).code == 66


# --- sendmail(1), the default transport ---------------------------------------------------


def test_sendmail_transport(env: NotifyEnv, postfix: PostfixInstance) -> None:
    env.write_settings(transport="sendmail", sendmail="/usr/sbin/sendmail")
    # MAIL_CONFIG picks the test instance (Postfix's own variable, passed through by notify).
    ran = env.notify("mail", TO, "-s", "via sendmail", env={"MAIL_CONFIG": str(postfix.config_dir)})
    assert ran.code == 0, ran
    mail = parse(postfix.wait_for_delivery(TO)[0])
    assert mail["Subject"] == "via sendmail" and "pickup" in postfix.log()
    env.write_settings(sendmail=str(env.root / "no-such-sendmail"))
    assert env.notify("mail", TO, "-s", "kept").code == 75
    assert "cannot run" in env.log()


# --- SMTP relay with TLS and AUTH ---------------------------------------------------------


@pytest.fixture
def certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the relay's name in the settings)."""
    cert, key = workdir / "relay.crt", workdir / "relay.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    key.chmod(0o644)  # smtpd reads it in the test instance
    return cert, key


@pytest.fixture
def tls_postfix(make_postfix: MakePostfix, certificate: tuple[Path, Path]) -> PostfixInstance:
    cert, key = certificate
    postfix = make_postfix(
        extra_main_cf={
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_auth_only": "yes",
        }
    )
    # smtpd offers STARTTLS only with a tlsmgr(8) to seed it, which the instance's master.cf
    # lacks (its tests need no TLS): add one and reload.
    with open(postfix.config_dir / "master.cf", "a") as master_cf:
        master_cf.write("tlsmgr unix - - n 1000? 1 tlsmgr\n")
    postfix.reload()
    return postfix


def relay_settings(env: NotifyEnv, port: int, security: str, cert: Path, password: str) -> None:
    password_file = env.root / "relay.password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    env.write_settings(
        port=port, security=security, ca_file=str(cert), username="alice",
        password_file=str(password_file),
    )  # fmt: skip


def test_starttls_and_auth(
    env: NotifyEnv, tls_postfix: PostfixInstance, certificate: tuple[Path, Path]
) -> None:
    relay_settings(env, tls_postfix.sasl_port, "starttls", certificate[0], "secret")
    assert env.notify("mail", TO, "-s", "over STARTTLS").code == 0
    raw = tls_postfix.wait_for_delivery(TO)[0]
    assert b"with ESMTPSA" in raw  # TLS (S) and authenticated (A)
    relay_settings(env, tls_postfix.sasl_port, "starttls", certificate[0], "wrong")
    assert env.notify("mail", TO, "-s", "kept").code == 75
    assert "refused the login of 'alice'" in env.log()
    assert len(env.spooled()) == 1


@contextlib.contextmanager
def tls_proxy(cert: Path, key: Path, target: int) -> Iterator[int]:
    """Implicit TLS (smtps) in front of a plain SMTP port, as a provider's port 465 is."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", free_port()))
    port = listener.getsockname()[1]

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                try:
                    secure = context.wrap_socket(client, server_side=True)
                except (OSError, ssl.SSLError):
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", target))
                threading.Thread(target=pump, args=(secure, upstream), daemon=True).start()
                threading.Thread(target=pump, args=(upstream, secure), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield port
    finally:
        listener.close()


def test_implicit_tls(
    env: NotifyEnv, postfix: PostfixInstance, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    with tls_proxy(cert, key, postfix.sasl_port) as port:
        relay_settings(env, port, "tls", cert, "secret")
        assert env.notify("mail", TO, "-s", "over implicit TLS").code == 0
        assert b"with ESMTPA" in postfix.wait_for_delivery(TO)[0]
        # A certificate we do not trust: nothing is sent, the mail stays spooled.
        env.write_settings(ca_file=None)
        assert env.notify("mail", TO, "-s", "kept").code == 75
        assert "CERTIFICATE_VERIFY_FAILED" in env.log()
