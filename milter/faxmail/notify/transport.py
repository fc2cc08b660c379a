"""Hand one message to the mail system: the sendmail(1) command or an SMTP relay.

Only the hand-over is done here; what to do when it fails (keep the mail spooled and retry) is
spool.py's business. Every failure is a `HandoverFailed` whose text says what to fix.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from faxmail.core.settings import Mail


class HandoverFailed(Exception):
    """Nothing was handed over (relay down, TLS or AUTH failure, sendmail failed): retry later."""


@dataclass(frozen=True)
class Handover:
    accepted: tuple[str, ...]
    refused: dict[str, str] = field(default_factory=dict)  # 5xx: retrying will not help
    deferred: dict[str, str] = field(default_factory=dict)  # 4xx: retry these later


def hand_over(
    mail: Mail, sender: str, recipients: Sequence[str], message: bytes, *, smtputf8: bool
) -> Handover:
    if mail.transport == "sendmail":
        return _sendmail(mail, sender, recipients, message)
    return _smtp(mail, sender, recipients, message, smtputf8)


def _sendmail(mail: Mail, sender: str, recipients: Sequence[str], message: bytes) -> Handover:
    # -i: a line with a single dot is text; -f: envelope sender; "--": no recipient can be
    # taken for an option. Recipients come from the store and the policy, never from headers
    # (no -t), so nothing in a header can add one.
    argv = [str(mail.sendmail), "-i", "-f", sender, "--", *recipients]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    if "MAIL_CONFIG" in os.environ:  # Postfix's own way to pick an instance
        env["MAIL_CONFIG"] = os.environ["MAIL_CONFIG"]
    try:
        result = subprocess.run(
            argv,
            input=message.replace(b"\r\n", b"\n"),  # local submission uses bare LF
            capture_output=True,
            timeout=mail.timeout * 2,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HandoverFailed(f"cannot run {mail.sendmail}: {exc}") from exc
    if result.returncode != 0:
        why = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise HandoverFailed(
            f"{mail.sendmail} exited {result.returncode}: {why[-1] if why else 'no message'}"
        )
    return Handover(tuple(recipients))


def _password(mail: Mail) -> str:
    assert mail.password_file is not None  # settings: username needs password_file
    try:
        with open(mail.password_file, encoding="utf-8") as handle:
            return handle.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise HandoverFailed(f"cannot read mail.password_file: {exc}") from exc


def _smtp(
    mail: Mail, sender: str, recipients: Sequence[str], message: bytes, smtputf8: bool
) -> Handover:
    where = f"{mail.host}:{mail.smtp_port}"
    helo = mail.helo or socket.getfqdn()
    context = None
    if mail.security != "none":
        # Certificate and host name are checked; ca_file is for a private CA.
        context = ssl.create_default_context(cafile=mail.ca_file)
    client: smtplib.SMTP
    try:
        if mail.security == "tls":
            client = smtplib.SMTP_SSL(
                mail.host,
                mail.smtp_port,
                local_hostname=helo,
                timeout=mail.timeout,
                context=context,
            )
        else:
            client = smtplib.SMTP(
                mail.host, mail.smtp_port, local_hostname=helo, timeout=mail.timeout
            )
        with client:
            client.ehlo()
            if mail.security == "starttls":
                if not client.has_extn("starttls"):
                    raise HandoverFailed(f"{where} does not offer STARTTLS (mail.security)")
                client.starttls(context=context)
                client.ehlo()
            if mail.username is not None:
                client.login(mail.username, _password(mail))
            options: list[str] = []
            if smtputf8:
                if not client.has_extn("smtputf8"):
                    raise HandoverFailed(f"{where} does not offer SMTPUTF8 (non-ASCII address)")
                options = ["SMTPUTF8", "BODY=8BITMIME"]
            problems = client.sendmail(sender, list(recipients), message, mail_options=options)
    except smtplib.SMTPRecipientsRefused as exc:
        return _sorted_out((), exc.recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise HandoverFailed(
            f"{where} refused the login of {mail.username!r}: {_reply(exc)}"
        ) from exc
    except smtplib.SMTPResponseException as exc:
        raise HandoverFailed(f"{where} answered {_reply(exc)}") from exc
    except (OSError, smtplib.SMTPException) as exc:  # ssl.SSLError is an OSError
        raise HandoverFailed(f"cannot hand over to {where}: {exc or type(exc).__name__}") from exc
    accepted = tuple(r for r in recipients if r not in problems)
    return _sorted_out(accepted, problems)


def _sorted_out(accepted: tuple[str, ...], problems: dict[str, tuple[int, bytes]]) -> Handover:
    refused: dict[str, str] = {}
    deferred: dict[str, str] = {}
    for rcpt, (code, text) in problems.items():
        reply = f"{code} {text.decode('utf-8', 'replace')}"
        (refused if code >= 500 else deferred)[rcpt] = reply
    return Handover(accepted, refused, deferred)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error
    return f"{exc.smtp_code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"
