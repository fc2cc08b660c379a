"""Read what a fax mail says: its documents (PDF and image parts) and a few header facts.

Everything here handles attacker-controlled bytes, so the rules are:

- Nothing from the mail becomes a path: documents are written as `part-01.pdf`, `part-02.png`...
  in the job's work dir; the attachment's name only appears, sanitised, in `Document.label`.
- The type of a document is decided by its magic bytes, not by its Content-Type or name:
  the renderer picks its pipeline by `Document.kind`, so the kind must be what the bytes are.
- A part whose Content-Type says "PDF" or "TIFF/PNG/JPEG" is the sender's explicit statement
  that it is a document; if its bytes are not a faxable format, or its base64 is broken, the
  mail is refused (DOCUMENT_DAMAGED) rather than faxed without it. A part with a generic type
  (application/octet-stream...) is only our guess from its name: it is taken when name and magic
  agree and silently ignored otherwise.
- Attached mails (message/rfc822 and every other message/*) are not descended into: their
  attachments were chosen by someone else's mail, not by the authenticated author of this one.
- Images that are resources of the HTML body (non-root parts of multipart/related, e.g. logos
  in a signature) are ignored like the body itself, unless marked `Content-Disposition:
  attachment`. PDFs are always taken: HTML cannot show a PDF inline.
- Structure is bounded (max_parts, max_depth) before anything is decoded or written.
- Header text is decoded without ever raising and comes back as one line of printable text.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.message
import email.policy
import email.utils
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .documents import Document
from .replies import (
    DOCUMENT_DAMAGED,
    MIME_TOO_DEEP,
    MIME_TOO_MANY_PARTS,
    NOTHING_TO_FAX,
    Refusal,
)

Kind = Literal["pdf", "tiff", "png", "jpeg"]

MAX_PARTS = 200
MAX_DEPTH = 20
HEADER_TEXT_LIMIT = 998  # RFC 5322 line limit: a decoded value never needs more
LABEL_NAME_LIMIT = 80

# =============================================================================================
# Parsing
# =============================================================================================


def parse_message(raw: bytes) -> email.message.Message:
    """Parse a whole mail the tolerant way (compat32: fast, records defects, keeps 8-bit bytes).

    The stdlib parser recurses once per nesting level and hits the recursion limit around
    300-1000 levels; such a mail is refused as too deeply nested instead of crashing the step.
    """
    try:
        return email.message_from_bytes(raw, policy=email.policy.compat32)
    except RecursionError:
        raise Refusal(MIME_TOO_DEEP.format(limit=MAX_DEPTH)) from None


# =============================================================================================
# Header text
# =============================================================================================

# compat32 decodes header bytes as ASCII with surrogateescape: bytes >= 0x80 become U+DC80..DCFF.
_SURROGATE = re.compile("[\udc80-\udcff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?]*)\?=")
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
_FOLDING_SPACE = re.compile(r"[ \t\r\n]*")
# Control characters, line/paragraph separators, bidi overrides/isolates (used to disguise
# names), lone surrogates: all become spaces so the text stays one honest line.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SPACES = re.compile(r"\s+")

# What real mail labels as X is usually the Windows/WHATWG superset of X.
_CHARSET_ALIASES: dict[str, tuple[str, ...]] = {
    "us-ascii": ("cp1252",),
    "ascii": ("cp1252",),
    "iso-8859-1": ("cp1252",),
    "latin1": ("cp1252",),
    "latin-1": ("cp1252",),
    "shift_jis": ("cp932", "shift_jis_2004"),
    "shift-jis": ("cp932", "shift_jis_2004"),
    "sjis": ("cp932", "shift_jis_2004"),
    "x-sjis": ("cp932", "shift_jis_2004"),
    "ms_kanji": ("cp932",),
    "csshiftjis": ("cp932",),
    "windows-31j": ("cp932",),
    "cp932": ("cp932",),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_2"),
    "csiso2022jp": ("iso2022_jp", "iso2022_jp_2"),
    "euc-jp": ("euc_jp", "euc_jis_2004"),
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "ks_c_5601-1987": ("cp949",),
    "euc-kr": ("cp949",),
    "big5": ("cp950", "big5hkscs"),
    "iso-8859-8-i": ("iso8859_8",),
}
# Python codecs that are not mail charsets; a mail naming them gets the 8-bit guess instead.
_NOT_CHARSETS = frozenset({"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined"})
_ISO2022JP = frozenset({"iso-2022-jp", "csiso2022jp"})
_JIS_ESCAPES = (b"$@", b"$B", b"(B", b"(J", b"(I")


def decode_header_text(value: str | None, *, limit: int = HEADER_TEXT_LIMIT) -> str:
    """Header value → one line of text: RFC 2047 decoded, controls as spaces, at most `limit`.

    Handles what Japanese and other mailers really send: ISO-2022-JP (also with NEC/IBM
    characters and escape sequences cut across encoded words), Shift_JIS, UTF-8, raw 8-bit
    headers (UTF-8 or Shift_JIS, which compat32 keeps as surrogate escapes), raw 7-bit JIS,
    unknown charsets. Never raises.
    """
    if not value:
        return ""
    # Work on a bounded prefix: a 1 MB header costs no more than a short one.
    text = _from_8bit(str(value)[: limit * 8])
    decoded = "".join(_decode_words(text))
    decoded = _UNPRINTABLE.sub(" ", decoded)
    decoded = _SPACES.sub(" ", decoded).strip()
    return decoded[:limit]


def _from_8bit(value: str) -> str:
    """Turn surrogate-escaped raw header bytes into text: UTF-8 if valid, else CP932, else Latin-1.

    UTF-8 is tried first because random non-UTF-8 bytes are almost never valid UTF-8; CP932
    (Shift_JIS as Windows sends it) is the other raw 8-bit header seen in practice. EUC-JP is
    not guessed: its bytes also decode as CP932.
    """
    if not _SURROGATE.search(value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp932")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
    # CP932 maps a few stray bytes into the private use area: that means "not CP932".
    return raw.decode("latin-1") if _PRIVATE_USE.search(text) else text


def _decode_words(text: str) -> Iterator[str]:
    """Yield decoded pieces of `text`.

    Adjacent encoded words in the same charset are joined as bytes before decoding, because
    mailers split them mid-character (UTF-8) or mid-escape-sequence (ISO-2022-JP); whitespace
    between encoded words is dropped as RFC 2047 says.
    """
    position = 0
    pending_charset: str | None = None
    pending = bytearray()
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        if pending_charset is not None and not _FOLDING_SPACE.fullmatch(between):
            yield _decode_bytes(bytes(pending), pending_charset)
            pending_charset = None
            pending.clear()
        if pending_charset is None:
            yield _decode_plain(between)
        charset = match.group(1).split("*", 1)[0].lower()  # RFC 2231 "charset*language"
        data = _word_bytes(match.group(2), match.group(3))
        if data is None:  # not decodable: keep the word as it was written
            if pending_charset is not None:
                yield _decode_bytes(bytes(pending), pending_charset)
                pending_charset = None
                pending.clear()
            yield match.group(0)
        elif charset == pending_charset:
            pending += data
        else:
            if pending_charset is not None:
                yield _decode_bytes(bytes(pending), pending_charset)
                pending.clear()
            pending_charset = charset
            pending += data
        position = match.end()
    if pending_charset is not None:
        yield _decode_bytes(bytes(pending), pending_charset)
    yield _decode_plain(text[position:])


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    data = payload.encode("utf-8", "surrogatepass")
    try:
        if encoding in "qQ":
            return binascii.a2b_qp(data, header=True)  # also turns "_" into a space
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)  # lenient: whitespace, bad padding
        if len(data) % 4 == 1:
            data = data[:-1]
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None


def _decode_plain(text: str) -> str:
    """Unencoded header text; raw ISO-2022-JP (ESC sequences, no encoded words) is decoded."""
    if "\x1b" not in text:
        return text
    try:
        return _decode_bytes(text.encode("ascii"), "iso-2022-jp")
    except UnicodeEncodeError:  # not pure 7-bit, so not JIS either
        return text


def _decode_bytes(data: bytes, charset: str) -> str:
    for codec in _codecs_for(charset):
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    if charset in _ISO2022JP:
        return _decode_jis(data)
    return _from_8bit(data.decode("ascii", "surrogateescape"))


def _codecs_for(charset: str) -> tuple[str, ...]:
    if charset in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[charset]
    try:
        name = codecs.lookup(charset).name.replace("-", "_")
    except (LookupError, ValueError):
        return ("utf-8",)  # unknown charset: then the 8-bit guess
    if name in _NOT_CHARSETS or name.endswith("_codec"):
        return ("utf-8",)
    return (name,)


def _decode_jis(data: bytes) -> str:
    """Lenient ISO-2022-JP: maps JIS X 0208 pairs to CP932, which also knows the NEC and IBM
    extensions (circled digits...) that Windows mailers put in "ISO-2022-JP" and Python's
    strict codec rejects. Broken or cut escape sequences become U+FFFD.
    """
    out: list[str] = []
    mode = "ascii"
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == 0x1B:
            escape = data[index + 1 : index + 3]
            if escape in (b"$@", b"$B"):
                mode = "kanji"
            elif escape in (b"(B", b"(J"):
                mode = "ascii"
            elif escape == b"(I":
                mode = "kana"
            elif len(escape) < 2 and any(e.startswith(escape) for e in _JIS_ESCAPES):
                out.append("\ufffd")  # cut off at the end: drop what is left of it
                break
            else:
                out.append("\ufffd")
                index += 1
                continue
            index += 3
        elif mode == "kanji" and 0x21 <= byte <= 0x7E:
            if index + 1 >= len(data) or not 0x21 <= data[index + 1] <= 0x7E:
                out.append("\ufffd")
                index += 1
                continue
            out.append(_jis_pair_to_cp932(byte, data[index + 1]).decode("cp932", "replace"))
            index += 2
        elif mode == "kana" and 0x21 <= byte <= 0x5F:
            out.append(bytes([byte + 0x80]).decode("cp932"))
            index += 1
        else:
            out.append(chr(byte) if byte < 0x80 else "\ufffd")
            index += 1
    return "".join(out)


def _jis_pair_to_cp932(first: int, second: int) -> bytes:
    lead = ((first + 1) >> 1) + 0x70
    if lead >= 0xA0:
        lead += 0x40
    if first & 1:
        trail = second + 0x1F
        if trail >= 0x7F:
            trail += 1
    else:
        trail = second + 0x7E
    return bytes([lead, trail])


# =============================================================================================
# Header facts
# =============================================================================================

# An address we can use: a dot-atom-ish local part (UTF-8 allowed) and an ASCII host name.
_ADDRESS = re.compile(
    r"[^\x00-\x20\x7f-\x9f@<>()\[\],;:\"\\]{1,64}@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_MESSAGE_ID = re.compile(r"<([\x21-\x3b\x3d\x3f-\x7e]{1,250})>")


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
    text = _SPACES.sub(" ", _from_8bit(value[:4000])).strip()
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


# =============================================================================================
# Documents
# =============================================================================================

# Content-Types that declare a document (aliases included: old clients still send them).
_DECLARED: dict[str, Kind] = {
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    "application/acrobat": "pdf",
    "application/vnd.pdf": "pdf",
    "image/tiff": "tiff",
    "image/x-tiff": "tiff",
    "image/png": "png",
    "image/x-png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
}
# Content-Types that say nothing: the file name decides whether a part is a candidate.
_GENERIC = frozenset(
    {
        "application/octet-stream",
        "application/x-octet-stream",
        "binary/octet-stream",
        "application/binary",
        "application/unknown",
        "application/download",
        "application/x-download",
        "application/force-download",
        "application/save",
    }
)
_EXTENSIONS: dict[str, Kind] = {
    "pdf": "pdf",
    "tif": "tiff",
    "tiff": "tiff",
    "png": "png",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "jpe": "jpeg",
}
_LABEL_UNSAFE = re.compile(r"[^\w .,+()\[\]@&-]")


def sniff(data: bytes) -> Kind | None:
    """The faxable format `data` is, by magic bytes; None if none of ours."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    # PDF readers (and Ghostscript, qpdf) accept junk before the header in the first 1 KiB.
    if b"%PDF-" in data[:1024]:
        return "pdf"
    return None


@dataclass(frozen=True)
class _Candidate:
    part: email.message.Message
    name: str | None  # decoded attachment name, still unsafe
    expected: Kind | None  # generic type: the kind its name promises; declared type: None


def extract_documents(
    message: email.message.Message,
    workdir: Path,
    *,
    max_parts: int = MAX_PARTS,
    max_depth: int = MAX_DEPTH,
) -> list[Document]:
    """Write every faxable part of `message` into `workdir`, in document order.

    Raises Refusal: MIME_TOO_MANY_PARTS / MIME_TOO_DEEP (checked before anything is decoded),
    DOCUMENT_DAMAGED (bad base64, declared document that is not one, empty), NOTHING_TO_FAX.
    Files written before a refusal are removed again.
    """
    candidates = _candidates(message, max_parts, max_depth)
    documents: list[Document] = []
    try:
        for candidate in candidates:
            number = len(documents) + 1
            label = _label(number, candidate.name)
            data = _body_bytes(candidate.part, label)
            kind = sniff(data)
            if candidate.expected is not None and kind != candidate.expected:
                continue  # a generic part we guessed wrong about: not a document
            if kind is None:
                why = "it is not a PDF, TIFF, PNG or JPEG file"
                raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why))
            path = workdir / f"part-{number:02d}.{kind}"
            _write_new(path, data)
            documents.append(Document(kind, path, label))
    except BaseException:
        for document in documents:
            document.path.unlink(missing_ok=True)
        raise
    if not documents:
        raise Refusal(NOTHING_TO_FAX)
    return documents


def _candidates(message: email.message.Message, max_parts: int, max_depth: int) -> list[_Candidate]:
    """Walk the MIME tree depth-first without recursion, bounded in parts and depth."""
    found: list[_Candidate] = []
    # (part, depth, is a resource of an HTML body)
    stack: list[tuple[email.message.Message, int, bool]] = [(message, 0, False)]
    seen = 0
    while stack:
        part, depth, resource = stack.pop()
        seen += 1
        if seen > max_parts:
            raise Refusal(MIME_TOO_MANY_PARTS.format(limit=max_parts))
        if depth > max_depth:
            raise Refusal(MIME_TOO_DEEP.format(limit=max_depth))
        ctype = part.get_content_type()
        if part.is_multipart():
            if not ctype.startswith("multipart/"):
                continue  # message/rfc822 and friends: attached mails are not ours to fax
            children = [c for c in part.get_payload() if isinstance(c, email.message.Message)]
            root = _related_root(part, children) if ctype == "multipart/related" else None
            for index in reversed(range(len(children))):
                in_body = resource or (root is not None and index != root)
                stack.append((children[index], depth + 1, in_body))
            continue
        candidate = _candidate(part, ctype, resource)
        if candidate is not None:
            found.append(candidate)
    return found


def _related_root(part: email.message.Message, children: list[email.message.Message]) -> int:
    """RFC 2387: the root is the part named by `start`, else the first."""
    start = part.get_param("start")
    if isinstance(start, str):
        wanted = start.strip().strip("<>")
        for index, child in enumerate(children):
            if str(child.get("content-id", "")).strip().strip("<>") == wanted:
                return index
    return 0


def _candidate(part: email.message.Message, ctype: str, resource: bool) -> _Candidate | None:
    declared = _DECLARED.get(ctype)
    if declared is None and ctype not in _GENERIC:
        return None  # text bodies, other attachments
    name = _filename(part)
    expected: Kind | None = None
    if declared is None:
        _, dot, extension = (name or "").strip().rpartition(".")
        expected = _EXTENSIONS.get(extension.lower()) if dot else None
        if expected is None:
            return None
    if resource and (declared or expected) != "pdf" and not _is_attachment(part):
        return None  # an image shown inside the HTML body (logo, signature)
    return _Candidate(part, name, expected)


def _is_attachment(part: email.message.Message) -> bool:
    disposition = str(part.get("content-disposition", ""))
    return disposition.split(";", 1)[0].strip().lower() == "attachment"


def _filename(part: email.message.Message) -> str | None:
    """The part's file name (RFC 2231, RFC 2047 in quotes, raw 8-bit all tolerated), decoded.

    compat32 hands 8-bit header values over as Header objects whose bytes are lost, so the
    raw Content-Disposition / Content-Type values are re-read into a scratch message as text.
    """
    scratch = email.message.Message()
    for key, value in part.raw_items():
        if key.strip().lower() in ("content-disposition", "content-type"):
            scratch[key] = _from_8bit(str(value)[:4000])
    try:
        name = scratch.get_filename()
    except (ValueError, LookupError, UnicodeError, TypeError, IndexError, AttributeError):
        return None
    if not name:
        return None
    return decode_header_text(name, limit=400) or None


def _label(number: int, name: str | None) -> str:
    """ "attachment 2 (report.pdf)": letters, digits, a little punctuation; bounded."""
    if not name:
        return f"attachment {number}"
    base = re.split(r"[/\\]", name)[-1]  # Windows clients send whole paths
    base = _LABEL_UNSAFE.sub("_", unicodedata.normalize("NFC", base)).strip()
    if len(base) > LABEL_NAME_LIMIT:
        base = base[: LABEL_NAME_LIMIT - 3] + "..."
    return f"attachment {number} ({base})" if base else f"attachment {number}"


def _body_bytes(part: email.message.Message, label: str) -> bytes:
    payload = part.get_payload()
    if not isinstance(payload, str):
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="unreadable MIME part"))
    encoding = str(part.get("content-transfer-encoding", "7bit")).strip().lower()
    if encoding == "base64":
        # Strict, unlike compat32's decoder: a damaged document must be refused, not faxed with
        # garbage pages. (8-bit bytes in the text come back as U+FFFD and fail here too.)
        raw = payload.encode("utf-8", "replace").translate(None, b" \t\r\n\v\f")
        try:
            data = binascii.a2b_base64(raw, strict_mode=True)
        except binascii.Error:
            raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="bad base64")) from None
    elif encoding in ("quoted-printable", "7bit", "8bit", "binary", ""):
        # compat32 gives back the exact received bytes here (get_payload() alone would not).
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
    else:
        why = f"unsupported transfer encoding {encoding[:40]}"
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why))
    if not data:
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="it is empty"))
    return data


def _write_new(path: Path, data: bytes) -> None:
    """Create `path` (never overwrite, never follow a link) readable by us only."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(path, flags, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
