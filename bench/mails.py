"""DKIM-signed benchmark mails, built with the test suite's message builder and keys."""

from __future__ import annotations

import itertools
import re
import smtplib
import socket
import time
from dataclasses import dataclass

from infra.dkimkeys import Signer
from infra.mail import Attachment, build_message

from .lab import BENCH_DOMAIN

FAX = "fax+03-1234-5678@example.jp"
AUTHOR = "alice@example.jp"
_serial = itertools.count(1)
_DOT = re.compile(rb"(?m)^\.")


def fax_mail(signer: Signer, pdf: bytes, *, author: str = AUTHOR, to: str = FAX) -> bytes:
    """A signed fax mail with a fresh Message-ID (the milter faxes a resent one only once)."""
    raw = build_message(
        from_addr=author,
        to=[to],
        subject="Quotation Q-2026-0481",
        body="Please fax the attached quotation.\n",
        attachments=[Attachment(pdf, filename="quotation.pdf")],
        message_id=f"<bench-{time.time_ns()}-{next(_serial)}@example.jp>",
    )
    return signer.sign(raw)


def plain_mail(signer: Signer) -> bytes:
    """An ordinary signed mail of about 2 KB, to a non-fax address."""
    body = "".join(
        f"Line {n:02d} of an ordinary message that is not a fax; nothing to see here.\n"
        for n in range(24)
    )
    raw = build_message(
        from_addr=AUTHOR,
        to=[f"user@{BENCH_DOMAIN}"],
        subject="weekly report",
        body=body,
        message_id="<bench-plain@example.jp>",
    )
    return signer.sign(raw)


@dataclass
class Timed:
    code: int
    text: str
    seconds: float  # from the last byte of the message (the final ".") to the reply


def send_timed(
    host: str, port: int, mail_from: str, rcpt: str, message: bytes, timeout: float = 300
) -> Timed:
    """One SMTP transaction; times end-of-DATA → reply, nothing else.

    The message is sent, then the clock starts, then the lone "." goes out: what is timed is
    exactly what Postfix and the milter do after the client has finished."""
    with smtplib.SMTP(host, port, local_hostname="client.faxmail.test", timeout=timeout) as smtp:
        # else the lone "." waits behind Nagle for the ACK of the body's last segment (40 ms)
        assert smtp.sock is not None
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        smtp.ehlo()
        code, text = smtp.mail(mail_from)
        if code != 250:
            return Timed(code, text.decode("utf-8", "replace"), 0.0)
        code, text = smtp.rcpt(rcpt)
        if code not in (250, 251):
            return Timed(code, text.decode("utf-8", "replace"), 0.0)
        code, text = smtp.docmd("DATA")
        if code != 354:
            return Timed(code, text.decode("utf-8", "replace"), 0.0)
        body = _DOT.sub(b"..", message)  # dot-stuffing, as smtplib.data() does it
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        smtp.send(body)
        t0 = time.perf_counter()
        smtp.send(b".\r\n")
        code, text = smtp.getreply()
        elapsed = time.perf_counter() - t0
        return Timed(code, text.decode("utf-8", "replace"), elapsed)
