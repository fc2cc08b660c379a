"""The few header facts the pipeline needs (Subject, From, Reply-To, Message-ID), checked.

Address fields are parsed defensively: a From field whose mailboxes cannot be counted and
read unambiguously yields no address rather than one the author never wrote.
"""

from __future__ import annotations

import email.message
import email.utils
import re
from dataclasses import dataclass

from faxmail.core.headertext import decode_header_text, from_8bit

# An address we can use: a dot-atom-ish local part (UTF-8 allowed) and an ASCII host name.
_ADDRESS = re.compile(
    r"[^\x00-\x20\x7f-\x9f@<>()\[\],;:\"\\]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_MESSAGE_ID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]{1,250})>")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class MessageFacts:
    subject: str  # decoded, one line, "" when absent
    from_name: str  # decoded display name of the (first) From field, "" when none
    from_address: str  # its one mailbox; "" when absent, unparsable or more than one mailbox
    from_count: int  # number of From fields: the caller decides what more than one means
    reply_to: str | None  # the first usable Reply-To mailbox
    message_id: str | None  # "<id@host>", printable ASCII, bounded; None when absent/garbage


def message_facts(message: email.message.Message) -> MessageFacts:
    """The header facts the pipeline needs, each decoded and checked; never raises on garbage."""
    fields = _raw_fields(message)
    froms = fields.get("from", [])
    from_name, from_address = "", ""
    if froms:
        mailboxes = _mailboxes(froms[0])
        if len(mailboxes) == 1:
            from_name, from_address = mailboxes[0]
        elif mailboxes:
            from_name = mailboxes[0][0]
    reply_to = None
    for value in fields.get("reply-to", [])[:1]:
        reply_to = next((address for _, address in _mailboxes(value) if address), None)
    message_id = None
    for value in fields.get("message-id", [])[:1]:
        found = _MESSAGE_ID.search(value[:2000])
        message_id = f"<{found.group(1)}>" if found else None
    return MessageFacts(
        subject=decode_header_text(next(iter(fields.get("subject", [])), None)),
        from_name=from_name,
        from_address=from_address,
        from_count=len(froms),
        reply_to=reply_to,
        message_id=message_id,
    )


def _raw_fields(message: email.message.Message) -> dict[str, list[str]]:
    """Header values as received (compat32's `get` would turn 8-bit values into Header objects)."""
    fields: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        fields.setdefault(str(name).strip().lower(), []).append(str(value))
    return fields


def _mailboxes(value: str) -> list[tuple[str, str]]:
    """(decoded display name, address or "") for each mailbox of an address field.

    Python 3.11's getaddresses is not strict (CVE-2023-27043: `a@x)<b@y>` and unbalanced
    parentheses give addresses the author never wrote), so its result is only trusted when
    the parentheses balance and the number of mailboxes equals what the commas outside
    quoted names announce; otherwise the field counts as one mailbox with no usable address.
    """
    text = _SPACES.sub(" ", from_8bit(value[:4000])).strip()
    if not text:
        return []
    if not _parentheses_balance(text):
        return [("", "")]
    parsed = email.utils.getaddresses([text])
    if len(parsed) != 1 + _QUOTED.sub("", text).count(","):
        return [("", "")]
    result = []
    for name, address in parsed:
        # The address must also appear as written: the parser glues folded or broken text
        # together into addresses nobody wrote (`<a@x.com\r\n foo>` gives "a@x.comfoo").
        usable = address if _ADDRESS.fullmatch(address) and len(address) <= 254 else ""
        if usable and usable not in text:
            usable = ""
        result.append((decode_header_text(name, limit=200), usable))
    return result


def _parentheses_balance(text: str) -> bool:
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0
