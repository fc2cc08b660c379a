"""The documents of a fax mail: its PDF and image parts, written to the job's work dir.

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

Header text (attachment names too) is decoded by headertext.py; header facts are in facts.py.
"""

from __future__ import annotations

import email
import email.message
import email.parser
import email.policy
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from faxmail.core.documents import Document, DocumentKind
from faxmail.core.headertext import decode_header_text, from_8bit
from faxmail.core.replies import (
    DOCUMENT_DAMAGED,
    MIME_TOO_DEEP,
    MIME_TOO_MANY_PARTS,
    NOTHING_TO_FAX,
    Refusal,
)
from faxmail.outbound.mimeparse import MAX_DEPTH
from faxmail.outbound.partbody import write_part_body
from faxmail.render.officefile import (
    NOT_OFFICE,
    OfficeClaim,
    office_claim,
    recognise,
    same_office_family,
)

Kind = Literal["pdf", "tiff", "png", "jpeg"]

MAX_PARTS = 200
LABEL_NAME_LIMIT = 80

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
    expected: DocumentKind | None  # generic type: the kind its name promises; declared: None
    office: OfficeClaim | None = None  # an Office or text attachment (render/officefile.py)


def extract_documents(
    message: email.message.Message,
    workdir: Path,
    *,
    max_parts: int = MAX_PARTS,
    max_depth: int = MAX_DEPTH,
    required: bool = True,
) -> list[Document]:
    """Write every faxable part of `message` into `workdir`, in document order.

    Raises Refusal: MIME_TOO_MANY_PARTS / MIME_TOO_DEEP (checked before anything is decoded),
    DOCUMENT_DAMAGED (bad base64, declared document that is not one, empty), NOTHING_TO_FAX
    (unless not `required`: the mail's text may be faxed instead, outbound/content.py).
    Files written before a refusal are removed again.
    """
    candidates = _candidates(message, max_parts, max_depth)
    documents: list[Document] = []
    staging = workdir / "part.new"
    try:
        for candidate in candidates:
            number = len(documents) + 1
            label = _label(number, candidate.name)
            write_part_body(candidate.part, label, staging)
            kind: DocumentKind | None = sniff(_head(staging))
            if kind is None and candidate.office:
                charset = candidate.part.get_content_charset()
                kind = recognise(staging, label, text=candidate.office.text, charset=charset)
            if candidate.expected is not None and not same_office_family(candidate.expected, kind):
                staging.unlink()
                continue  # a generic part we guessed wrong about: not a document
            if kind is None:
                why = NOT_OFFICE if candidate.office else "it is not a PDF, TIFF, PNG or JPEG file"
                raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why))
            path = workdir / f"part-{number:02d}.{kind}"
            staging.rename(path)
            documents.append(Document(kind, path, label))
    except BaseException:
        staging.unlink(missing_ok=True)
        for document in documents:
            document.path.unlink(missing_ok=True)
        raise
    if not documents and required:
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
    office = office_claim(ctype, lambda: _filename(part), _is_attachment(part), ctype in _GENERIC)
    if office is not None:  # taken inside an HTML body too: HTML cannot show it inline
        return _Candidate(part, _filename(part), office.expected, office)
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
            scratch[key] = from_8bit(str(value)[:4000])
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


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(1024)
