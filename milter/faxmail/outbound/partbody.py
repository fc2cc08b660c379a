"""A MIME part's body decoded into a new file: strict base64 piece by piece, never whole.

The part and its encoding are attacker-controlled: damaged base64 is refused (DOCUMENT_DAMAGED),
never decoded leniently into garbage pages; the file is created new, never over a link.
"""

from __future__ import annotations

import binascii
import email.message
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from faxmail.core.replies import DOCUMENT_DAMAGED, Refusal

BASE64_PIECE = 1024 * 1024  # characters decoded at a time: a document is never in memory twice
_BASE64_JUNK = b" \t\r\n\v\f"
MAX_PADDING_TEXT = 64


def write_part_body(part: email.message.Message, label: str, path: Path) -> None:
    """Decode the part's body into a new file at `path`; Refusal if damaged or empty."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="unreadable MIME part"))
    encoding = str(part.get("content-transfer-encoding", "7bit")).strip().lower()
    if encoding not in ("base64", "quoted-printable", "7bit", "8bit", "binary", ""):
        why = f"unsupported transfer encoding {encoding[:40]}"
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why))
    with open_new(path) as handle:
        if encoding == "base64":
            _decode_base64(payload, handle.write, label)
        else:
            # compat32 gives back the exact received bytes here (get_payload() alone would not).
            decoded = part.get_payload(decode=True)
            handle.write(decoded if isinstance(decoded, bytes) else b"")
        empty = handle.tell() == 0
    if empty:
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="it is empty"))


def _decode_base64(text: str, write: Callable[[bytes], object], label: str) -> None:
    """Strict base64, piece by piece, exactly as strict decoding of the whole text would be
    (unlike compat32's decoder: a damaged document must be refused, not faxed with garbage
    pages; 8-bit bytes come back as U+FFFD and fail too)."""
    padding = text.find("=")
    data_end = len(text) if padding < 0 else padding
    carry = b""
    try:
        for start in range(0, data_end, BASE64_PIECE):
            piece = text[start : min(start + BASE64_PIECE, data_end)]
            chunk = carry + piece.encode("utf-8", "replace").translate(None, _BASE64_JUNK)
            # The last quantum (whole or not) waits: padding after it is judged with it.
            keep = min(len(chunk), len(chunk) % 4 or 4)
            write(binascii.a2b_base64(chunk[: len(chunk) - keep], strict_mode=True))
            carry = chunk[len(chunk) - keep :]
        last = carry + _after_padding(text, data_end, label)
        if last:
            write(binascii.a2b_base64(last, strict_mode=True))
    except binascii.Error:
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="bad base64")) from None


def _after_padding(text: str, start: int, label: str) -> bytes:
    """The non-space characters from the first "=" on: a few "=" in real mail, so more than
    MAX_PADDING_TEXT of them is refused without collecting them."""
    found = b""
    for begin in range(start, len(text), BASE64_PIECE):
        piece = text[begin : begin + BASE64_PIECE].encode("utf-8", "replace")
        found += piece.translate(None, _BASE64_JUNK)
        if len(found) > MAX_PADDING_TEXT:
            raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="bad base64"))
    return found


def open_new(path: Path) -> IO[bytes]:
    """Create `path` (never overwrite, never follow a link) readable by us only."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, 0o600), "wb")
