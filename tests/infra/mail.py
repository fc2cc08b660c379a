"""Build test messages as CRLF bytes with the stdlib email package.

Uses the legacy (compat32) API on purpose: it keeps an ``email.header.Header`` encoded in
the charset we chose (e.g. ISO-2022-JP, as Japanese mailers send it), whereas the modern
EmailMessage API re-encodes every non-ASCII header as UTF-8 when serialising.
"""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid

#: CRLF output without refolding what we set.
_POLICY = email.policy.compat32.clone(linesep="\r\n")

#: A fixed Date so messages (and their DKIM signatures) are reproducible when wanted.
FIXED_DATE = "Thu, 01 Jan 2026 09:00:00 +0900"


@dataclass(frozen=True)
class Attachment:
    """One MIME part: raw bytes, its content type and an optional file name."""

    data: bytes
    content_type: str = "application/pdf"
    filename: str | None = None
    #: "attachment" or "inline".
    disposition: str = "attachment"


def encode_header(text: str, charset: str | None = None) -> str:
    """RFC 2047-encode ``text`` in ``charset`` (None: leave ASCII as is, else UTF-8)."""
    if charset is None:
        if text.isascii():
            return text
        charset = "utf-8"
    return Header(text, charset).encode()


def address(addr: str, name: str | None = None, charset: str | None = None) -> str:
    """``"Name" <addr>`` with the display name encoded when not ASCII."""
    if name is None:
        return addr
    return formataddr((encode_header(name, charset), addr))


def _body_part(body: str, subtype: str, charset: str | None) -> MIMEText:
    cs = charset or ("us-ascii" if body.isascii() else "utf-8")
    return MIMEText(body, subtype, cs)


def _attachment_part(att: Attachment) -> MIMEBase:
    maintype, _, subtype = att.content_type.partition("/")
    part: MIMEBase
    if maintype == "text":
        part = MIMEText(att.data.decode("utf-8"), subtype, "utf-8")
    else:
        part = MIMEApplication(att.data, subtype)
        if maintype != "application":  # MIMEApplication fixes the main type; rewrite it
            part.replace_header("Content-Type", att.content_type)
    if att.filename is not None:
        fname: str | tuple[str, str, str] = (
            att.filename if att.filename.isascii() else ("utf-8", "", att.filename)
        )
        part.add_header("Content-Disposition", att.disposition, filename=fname)
    else:
        part.add_header("Content-Disposition", att.disposition)
    return part


def build_message(
    *,
    from_addr: str = "sender@other.example",
    from_name: str | None = None,
    to: Sequence[str] = ("user@example.jp",),
    cc: Sequence[str] = (),
    subject: str = "test message",
    subject_charset: str | None = None,
    body: str = "Hello.\n",
    body_subtype: str = "plain",
    body_charset: str | None = None,
    attachments: Sequence[Attachment] = (),
    message_id: str | None = None,
    date: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A complete message as bytes with CRLF line endings.

    ``subject_charset="iso-2022-jp"`` gives ``=?iso-2022-jp?b?...?=`` subjects; otherwise
    non-ASCII text is UTF-8. ``to``/``cc`` are header values only (the envelope is the
    caller's). ``message_id=None`` makes a fresh one; ``date=None`` uses :data:`FIXED_DATE`
    (pass ``"now"`` for the current time). ``extra_headers`` are appended as given, so a
    second ``From`` can be added for forgery tests.
    """
    if attachments:
        msg: MIMEBase = MIMEMultipart("mixed")
        msg.attach(_body_part(body, body_subtype, body_charset))
        for att in attachments:
            msg.attach(_attachment_part(att))
    else:
        msg = _body_part(body, body_subtype, body_charset)
    # Header order as a mail client writes it; MIME headers from the constructors stay last.
    head: list[tuple[str, str]] = [
        ("From", address(from_addr, from_name, subject_charset)),
        ("To", ", ".join(to)),
    ]
    if cc:
        head.append(("Cc", ", ".join(cc)))
    head += [
        ("Subject", encode_header(subject, subject_charset)),
        ("Date", formatdate(localtime=True) if date == "now" else (date or FIXED_DATE)),
        ("Message-ID", message_id or make_msgid(domain="test.faxmail.invalid")),
    ]
    mime_headers = list(msg.items())
    for name in {n for n, _ in mime_headers}:
        del msg[name]
    for name, value in [*head, *mime_headers, *extra_headers]:
        msg[name] = value
    return msg.as_bytes(policy=_POLICY)


def crlf(message: bytes) -> bytes:
    """Normalise any line endings to CRLF (Maildir copies are stored with LF)."""
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
