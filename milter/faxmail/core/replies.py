"""Every SMTP answer faxmail gives, in one place.

A step of the outbound pipeline refuses a mail by raising `Refusal(SOME_REPLY.format(...))`.
Enhanced codes follow RFC 3463; the DKIM ones RFC 7372.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNSAFE = re.compile(r"[^\x20-\x7e]")


def printable(text: str, limit: int = 200) -> str:
    """Make untrusted text safe for an SMTP reply line: ASCII printable, bounded, no '%'."""
    text = _UNSAFE.sub("?", text).replace("%", "?")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Reply:
    code: str  # "550"
    enhanced: str  # "5.7.1"
    text: str  # a sentence for a human; may hold {placeholders}

    @property
    def temporary(self) -> bool:
        return self.code.startswith("4")

    def format(self, **values: object) -> Reply:
        safe = {k: printable(str(v)) for k, v in values.items()}
        return Reply(self.code, self.enhanced, self.text.format(**safe))

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


class Refusal(Exception):
    """Raised by a pipeline step: the mail (or recipient) gets `reply`."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


# --- recipients (RCPT TO) ---
NUMBER_UNPARSABLE = Reply("553", "5.1.3", "fax number {number!s} is not a valid phone number")
NUMBER_FORBIDDEN = Reply("550", "5.7.1", "fax number {number!s} is not allowed ({reason!s})")
SENDER_UNKNOWN = Reply("550", "5.7.1", "<{sender!s}> is not allowed to send faxes")
RATE_LIMITED = Reply(
    "450", "4.7.1", "<{sender!s}> has sent {count!s} faxes in the last {window!s}; try again later"
)

# --- end of message: the sender ---
FROM_MISSING = Reply("550", "5.6.0", "the message has no valid From: address")
FROM_NOT_SINGLE = Reply(
    "550", "5.6.0", "the message has {count!s} From: fields; exactly one is allowed"
)
FROM_NOT_ALLOWED = Reply("550", "5.7.1", "<{sender!s}> is not allowed to send faxes")
DKIM_NONE = Reply("550", "5.7.20", "No passing DKIM signature found")
DKIM_UNACCEPTABLE = Reply("550", "5.7.21", "No acceptable DKIM signature found ({why!s})")
# The signer leaves To:/Cc: unsigned (Microsoft 365 does): say which setting would accept it.
DKIM_RECIPIENT_UNSIGNED = Reply(
    "550",
    "5.7.21",
    "No acceptable DKIM signature found ({fax!s} is not in a signed To: or Cc: field;"
    " the fax admin can accept such signers with the policy setting unsigned_recipients)",
)
# unsigned_recipients: a second SMTP transaction with the same signed Message-ID is a replay.
MESSAGE_ID_FAXED = Reply(
    "550",
    "5.7.1",
    "message {message_id!s} was already faxed in another SMTP transaction; its signature"
    " does not cover To:/Cc:, so it is faxed once only (send a new message)",
)
DKIM_NOT_ALIGNED = Reply("550", "5.7.22", "No valid author-matched DKIM signature found")
DKIM_DNS_TEMPFAIL = Reply(
    "451", "4.7.5", "DKIM key lookup failed temporarily ({why!s}); please try again later"
)

# --- end of message: size and content ---
MESSAGE_TOO_BIG = Reply("552", "5.3.4", "message too big for fax (limit {limit!s} bytes)")
NOTHING_TO_FAX = Reply(
    "550",
    "5.6.0",
    "no PDF or image attachment found (accepted: PDF, TIFF, PNG, JPEG,"
    " DOCX, DOC, XLSX, XLS, ODT, ODS, RTF, PPTX, TXT)",
)
PDF_ENCRYPTED = Reply("550", "5.6.0", "the PDF is password-protected")
DOCUMENT_DAMAGED = Reply("550", "5.6.0", "{name!s} cannot be read: {why!s}")
TOO_MANY_PAGES = Reply("552", "5.3.4", "the fax has {pages!s} pages; at most {limit!s} are allowed")
RENDER_TOO_SLOW = Reply("552", "5.3.4", "the document took too long to render ({why!s})")
RENDERER_BUSY = Reply("451", "4.3.2", "fax renderer busy; please try again later")

# --- end of message: Office files (render/officefile.py, render/office.py) ---
# Macros never run: a document carrying them is refused before LibreOffice opens it.
OFFICE_MACROS = Reply(
    "550",
    "5.6.1",
    "{name!s} contains macros, which are not accepted; save it without macros or as PDF",
)
OFFICE_ENCRYPTED = Reply(
    "550", "5.6.0", "{name!s} is password-protected; send it without a password or as PDF"
)
OFFICE_CONVERSION_FAILED = Reply(
    "550", "5.6.5", "{name!s} could not be converted for faxing: {why!s}"
)
OFFICE_CONVERTER_BUSY = Reply("451", "4.3.2", "document converter busy; please try again later")

# --- our own faults ---
LOCAL_ERROR = Reply("451", "4.3.0", "temporary local problem; please try again later")
QUEUE_UNAVAILABLE = Reply("451", "4.3.0", "the fax queue is not available; please try again later")
SPOOL_FULL = Reply("452", "4.3.1", "insufficient fax spool space; please try again later")

# --- end of message: MIME structure (extract.py) ---
MIME_TOO_MANY_PARTS = Reply(
    "552", "5.3.4", "the message has more than {limit!s} MIME parts; too complex to fax"
)
MIME_TOO_DEEP = Reply(
    "552", "5.3.4", "the message's MIME parts nest more than {limit!s} deep; too complex to fax"
)

# --- end of message: a later sending time asked for in the Subject (queue/sendlater.py) ---
SEND_LATER_REFUSED = Reply(
    "550", "5.5.4", "the fax cannot be sent at the time the Subject asks for: {why!s}"
)

# --- end of message: the mail's text as the fax (outbound/content.py) ---
NO_TEXT_TO_FAX = Reply(
    "550", "5.6.0", "no attachment and no text in the mail to fax (fax.body: {policy!s})"
)
