"""Arguments from the dialplan, each checked against its own alphabet before anything else.

System() hands its whole argument to /bin/sh, and caller IDs, station ids and fax error texts
are chosen by whoever calls. The shipped dialplan therefore passes numbers and states through
FILTER(), and free text base64-encoded and FILTER()ed to the base64 alphabet. We check again
here: a token outside its alphabet means an unsafe dialplan edit or a foreign caller, so it is
refused (EX_DATAERR), never "cleaned up" — cleaning would hide the hole.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from faxmail.core.headertext import decode_header_text


class Refused(Exception):
    """An argument outside its alphabet (exit 65, EX_DATAERR)."""


def _token(name: str, pattern: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            # repr() and a bound: the value may itself be hostile or huge.
            raise Refused(f"{name}: {value!r:.60} is not allowed (expected {pattern})")
        return value

    check.__name__ = name  # argparse names the type in its messages
    return check


job_id = _token("job id", r"[0-9a-f]{8,64}")  # enqueue.new_job_id(): 16 hex digits
count = _token("number", r"[0-9]{0,9}")  # pages, bit rate, attempt, REASON; "" when unset
status = _token("fax status", r"[A-Z_]{0,20}")  # FAXSTATUS: SUCCESS, FAILED, "" (never ran)
resolution = _token("resolution", r"(?:[0-9]{1,6}x[0-9]{1,6})?")  # pixels/metre, "8031x7700"
mode = _token("fax mode", r"[A-Za-z0-9]{0,10}")  # FAXMODE: audio, T38
phone = _token("phone number", r"\+?[0-9]{0,64}")  # the DID, after FILTER(0-9+)
file_name = _token("file name", r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,99})?")  # no path or dot first
call_id = _token("call id", r"[0-9A-Za-z._-]{0,64}")  # UNIQUEID, "1700000000.12"
# FAXFILE after FILTER(A-Za-z0-9/._): an absolute path (fetch then wants exactly its own one).
fax_path = _token("fax path", r"/[A-Za-z0-9_./]{1,1000}")

_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# A long caller name must not keep a received fax from being mailed: accept 6 KB, show 200.
_BASE64_LIMIT = 8192


def text(value: str) -> str:
    """A free-text token → one printable line of at most 200 characters ("" for "").

    The token is base64 of "." + the text: the dialplan's BASE64_ENCODE(.${X}), with the dot
    because BASE64_ENCODE() of an empty value logs a syntax warning. The decoded text is only
    ever shown in a mail: controls, line breaks and bidi overrides become spaces; UTF-8, else
    CP932, else Latin-1 (as headertext reads raw header bytes).
    """
    if not value:
        return ""
    if len(value) > _BASE64_LIMIT or not _BASE64.fullmatch(value):
        raise Refused(f"text: {value!r:.60} is not base64 (pass it as BASE64_ENCODE(.TEXT))")
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error as exc:
        raise Refused(f"text: {value!r:.60} is not base64: {exc}") from exc
    if not raw.startswith(b"."):
        raise Refused(f"text: {value!r:.60} does not encode '.' + text")
    return decode_header_text(raw[1:].decode("utf-8", "surrogateescape"), limit=200)


def number(value: str) -> int | None:
    """A checked `count` token → int, None when empty."""
    return int(count(value)) if value else None


@dataclass(frozen=True)
class FaxReport:
    """The fax variables of the send context's `h` extension, checked and decoded."""

    status: str  # FAXSTATUS: SUCCESS, FAILED; "" when SendFAX never ran
    error: str  # FAXERROR
    status_string: str  # FAXSTATUSSTRING
    pages: int | None
    bitrate: int | None
    resolution: str  # "8031x7700" pixels per metre
    mode: str  # audio, T38
    station: str  # REMOTESTATIONID

    def detail(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FaxReport:
        """Back from asdict() or detail() (as kept in a spool entry)."""
        get = values.get
        return cls(
            status=get("status", ""),
            error=get("error", ""),
            status_string=get("status_string", ""),
            pages=get("pages"),
            bitrate=get("bitrate"),
            resolution=get("resolution", ""),
            mode=get("mode", ""),
            station=get("station", ""),
        )
