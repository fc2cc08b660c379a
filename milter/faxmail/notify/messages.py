"""Build our mails: headers done right, text (+ HTML with inline images), attachments.

- Non-ASCII header text is RFC 2047 encoded (UTF-8 encoded words), file names RFC 2231: any
  relay takes that. Only a non-ASCII *address* needs SMTPUTF8 (RFC 6532); the message is then
  written with raw UTF-8 headers and handed over with the SMTPUTF8 option.
- Date, Message-ID (at the From domain) and Auto-Submitted: auto-generated (RFC 3834), so
  vacation responders and ticket systems do not answer; X-Auto-Response-Suppress for Exchange.
- Addresses are built as Address objects, never pasted into header text.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr, quote

_LOCAL = re.compile(r'[^\s@<>()\[\],;:\\"]{1,64}')
_DOMAIN = re.compile(r'(?:[^\s@<>()\[\],;:\\".]{1,63}\.)+[^\s@<>()\[\],;:\\".]{2,63}')
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')  # a display name with these must be quoted


@dataclass(frozen=True)
class Part:
    data: bytes
    content_type: str  # "application/pdf"
    filename: str
    content_id: str | None = None  # for an image shown in the HTML part: "<...>"


@dataclass(frozen=True)
class Built:
    data: bytes
    smtputf8: bool
    message_id: str


class AddressError(ValueError):
    """Not a usable mail address."""


def mailbox(value: str) -> Address:
    """'Name <a@b>' or 'a@b' → Address; AddressError when it is not one usable address.

    Non-ASCII addresses (RFC 6531) are allowed: they go out with SMTPUTF8.
    """
    if len(getaddresses([value])) != 1:
        raise AddressError(f"{value!r:.80} is not one mail address")
    name, addr = parseaddr(value)
    local, _, domain = addr.rpartition("@")
    if not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        raise AddressError(f"{value!r:.80} is not a mail address")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise AddressError(f"{value!r:.80} is not a mail address: {exc}") from exc


def compose(
    *,
    sender: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    subject: str,
    text: str,
    html: str | None = None,
    inline: Sequence[Part] = (),
    attachments: Sequence[Part] = (),
) -> Built:
    """The complete message as CRLF bytes. Raises AddressError for a bad address."""
    author = mailbox(sender)
    recipients = [mailbox(a) for a in to]
    copies = [mailbox(a) for a in cc]
    everyone = [author, *recipients, *copies]
    smtputf8 = not all(a.addr_spec.isascii() for a in everyone)
    message_id = make_msgid("faxmail", domain=author.domain or "localhost")
    msg = EmailMessage()
    msg.set_content(text, cte=_cte(text))
    if html is not None:
        msg.add_alternative(html, subtype="html", cte=_cte(html))
        html_part = list(msg.iter_parts())[-1]
        for part in inline:
            maintype, _, subtype = part.content_type.partition("/")
            html_part.add_related(
                part.data,
                maintype,
                subtype,
                cid=part.content_id,
                disposition="inline",
                filename=part.filename,
            )
    for part in attachments:
        maintype, _, subtype = part.content_type.partition("/")
        msg.add_attachment(part.data, maintype, subtype, filename=part.filename)
    head = [
        f"From: {_addresses([author])}\r\n",
        f"To: {_addresses(recipients)}\r\n",
        f"Cc: {_addresses(copies)}\r\n" if copies else "",
        _header_line("Subject", " ".join(subject.split())),  # one line, whatever it came from
        f"Date: {formatdate(localtime=True)}\r\n",
        f"Message-ID: {message_id}\r\n",
        "Auto-Submitted: auto-generated\r\n",
        "X-Auto-Response-Suppress: All\r\n",
    ]
    policy = email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP
    header = "".join(head).encode("utf-8")
    return Built(header + msg.as_bytes(policy=policy), smtputf8, message_id)


def _header_line(name: str, value: str) -> str:
    """One header field, folded, non-ASCII text as RFC 2047 UTF-8 encoded words.

    email.header.Header, not the EmailMessage folder: Python 3.11's folder drops the space
    between two encoded words when it splits a long Japanese subject ("商事" (3枚) came back
    as "商事"(3枚)). Header splits inside the encoded text, where spaces survive.
    """
    charset = "us-ascii" if value.isascii() else "utf-8"
    folded = Header(value, charset, header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}\r\n"


def _addresses(addresses: Sequence[Address]) -> str:
    """Display names as RFC 2047 words when not ASCII, addresses as they are (UTF-8 only with
    SMTPUTF8, RFC 6532); one per line."""
    out = []
    for address in addresses:
        name = address.display_name
        if not name:
            out.append(address.addr_spec)
            continue
        if not name.isascii():
            name = Header(name, "utf-8").encode()
        elif _SPECIALS.search(name):
            name = f'"{quote(name)}"'
        out.append(f"{name} <{address.addr_spec}>")
    return ",\r\n ".join(out)


def _cte(text: str) -> str:
    # Base64 for non-ASCII text (what Japanese mailers send; quoted-printable would triple it),
    # so the message is 7-bit clean for any relay.
    return "7bit" if text.isascii() else "base64"


def content_id(domain: str, name: str) -> str:
    return make_msgid(name, domain=domain or "localhost")
