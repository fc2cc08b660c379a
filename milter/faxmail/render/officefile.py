"""What an Office attachment is, by its bytes: its format, and whether it may be converted.

LibreOffice (render/office.py) only ever opens a file this module has looked at first:

- The format comes from the content, never from the Content-Type or the name: a ZIP's members
  (`[Content_Types].xml` for OOXML, the `mimetype` member for ODF), an OLE compound file's
  streams (`WordDocument`, `Workbook`), `{\\rtf` for RTF. Text attachments are only taken as
  text when the sender said so (text/plain or `.txt`), and are stored as UTF-8.
- Macros are refused before LibreOffice sees the file (OFFICE_MACROS): OOXML macro-enabled
  content types, `vbaProject.bin`, Excel 4 macro sheets; OLE `Macros`, `_VBA_PROJECT_CUR` and
  `VBA` storages, BIFF macro and VB-module sheets; ODF `Basic/` and `Scripts/`.
- Password protection gets its own answer (OFFICE_ENCRYPTED): encrypted OOXML (an OLE file with
  `EncryptionInfo`), ODF `manifest:encryption-data`, the Word FIB's fEncrypted bit, a BIFF
  FILEPASS record.
- Everything read is bounded: a ZIP bomb's members are read only up to MEMBER_LIMIT.
"""

from __future__ import annotations

import codecs
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import olefile

from faxmail.core.documents import OFFICE_KINDS, OfficeKind
from faxmail.core.replies import DOCUMENT_DAMAGED, OFFICE_ENCRYPTED, OFFICE_MACROS, Refusal

# Content-Types that declare an Office document (the content still decides which one).
OFFICE_CONTENT_TYPES: dict[str, OfficeKind] = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/rtf": "rtf",
    "text/rtf": "rtf",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    # the macro-enabled ones are candidates too: they get their own refusal, not silence
    "application/vnd.ms-word.document.macroenabled.12": "docx",
    "application/vnd.ms-excel.sheet.macroenabled.12": "xlsx",
    "application/vnd.ms-powerpoint.presentation.macroenabled.12": "pptx",
}
OFFICE_EXTENSIONS: dict[str, OfficeKind] = {
    "docx": "docx",
    "docm": "docx",
    "dotx": "docx",
    "doc": "doc",
    "xlsx": "xlsx",
    "xlsm": "xlsx",
    "xls": "xls",
    "odt": "odt",
    "ods": "ods",
    "odp": "odp",
    "rtf": "rtf",
    "pptx": "pptx",
    "pptm": "pptx",
    "txt": "txt",
}

MEMBER_LIMIT = 4 * 1024 * 1024  # bytes read of [Content_Types].xml or manifest.xml
MAX_MEMBERS = 20_000
BIFF_SCAN_LIMIT = 4 * 1024 * 1024  # bytes of an XLS globals substream looked at
TEXT_PIECE = 256 * 1024
# Tried in this order when a text attachment names no charset (or one Python does not know).
TEXT_CHARSETS = ("utf-8-sig", "iso-2022-jp", "cp932", "euc-jp")

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_OOXML_MAIN: dict[str, OfficeKind] = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": "docx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": "xlsx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": "pptx",
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml": "pptx",
}
_ODF_MIMETYPES: dict[bytes, OfficeKind] = {
    b"application/vnd.oasis.opendocument.text": "odt",
    b"application/vnd.oasis.opendocument.spreadsheet": "ods",
    b"application/vnd.oasis.opendocument.presentation": "odp",
}
_BIFF_BOF, _BIFF_EOF, _BIFF_FILEPASS, _BIFF_BOUNDSHEET = 0x0809, 0x000A, 0x002F, 0x0085
_BIFF_MACRO_SHEETS = {1: "an Excel 4 macro sheet", 6: "a VBA module"}
_WORD_ENCRYPTED = 0x0100  # FibBase: fEncrypted


@dataclass(frozen=True)
class OfficeClaim:
    """What a MIME part's header says about it being an Office or text attachment."""

    expected: OfficeKind | None  # a generic type: the kind its name promises; declared: None
    text: bool  # declared text (text/plain, .txt): taken as text if it is no other format


NOT_OFFICE = "it is not a DOCX, DOC, XLSX, XLS, ODT, ODS, ODP, RTF or PPTX file"


def office_claim(
    content_type: str, name: Callable[[], str | None], attachment: bool, generic: bool
) -> OfficeClaim | None:
    """Is a part with this Content-Type (and file name, disposition) an Office candidate?

    text/plain counts only as an attachment (a file name or Content-Disposition: attachment):
    the mail's own text is not a document. A generic type (octet-stream) counts by its name.
    """
    if content_type == "text/plain":
        return OfficeClaim(None, True) if attachment or name() is not None else None
    if content_type in OFFICE_CONTENT_TYPES:
        return OfficeClaim(None, False)
    if not generic:
        return None
    _, dot, extension = (name() or "").strip().rpartition(".")
    by_name = OFFICE_EXTENSIONS.get(extension.lower()) if dot else None
    return None if by_name is None else OfficeClaim(by_name, by_name == "txt")


def same_office_family(expected: str, kind: str | None) -> bool:
    """Does the content match the kind a generic part's name promised? Within Office files the
    content decides (a DOCX renamed .doc is still a DOCX)."""
    return kind == expected or (kind in OFFICE_KINDS and expected in OFFICE_KINDS)


def recognise(
    path: Path, label: str, *, text: bool, charset: str | None = None
) -> OfficeKind | None:
    """The Office format the file at `path` is, or None if it is none of ours.

    text: the sender declared a text attachment (text/plain, `.txt`); then a file that is no
    other format is taken as text in `charset` (or a guessed one) and rewritten as UTF-8.
    Raises Refusal: OFFICE_MACROS, OFFICE_ENCRYPTED, DOCUMENT_DAMAGED (naming `label`).
    """
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path, label)
    if head == _OLE_MAGIC:
        return _ole_kind(path, label)
    if head.startswith(b"{\\rtf"):
        return "rtf"
    if text:
        _to_utf8(path, label, charset)
        return "txt"
    return None


# --- ZIP: OOXML and ODF --------------------------------------------------------------------
def _zip_kind(path: Path, label: str) -> OfficeKind | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if len(names) > MAX_MEMBERS:
                raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="too many ZIP members"))
            if "mimetype" in names:
                kind = _ODF_MIMETYPES.get(_member(archive, "mimetype", 200).strip())
                if kind is not None:
                    _check_odf(archive, names, label)
                    return kind
            if "[Content_Types].xml" in names:
                return _ooxml_kind(archive, names, label)
    # (zipfile lets zlib's errors through, a member with ZIP encryption is a RuntimeError, a
    # bad UTF-8 member name a UnicodeDecodeError)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        OSError,
        NotImplementedError,
        RuntimeError,
        ValueError,
    ):
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="damaged ZIP container")) from None
    return None


def _ooxml_kind(archive: zipfile.ZipFile, names: list[str], label: str) -> OfficeKind | None:
    types = _member(archive, "[Content_Types].xml", MEMBER_LIMIT).decode("utf-8", "replace")
    lowered = [name.lower() for name in names]
    if (
        "macroenabled" in types.lower()
        or "vbaproject" in types.lower()
        or any(name.endswith(("vbaproject.bin", "vbadata.xml")) for name in lowered)
        or any("/macrosheets/" in name for name in lowered)
    ):
        raise Refusal(OFFICE_MACROS.format(name=label))
    for content_type, kind in _OOXML_MAIN.items():
        if content_type in types:
            return kind
    return None


def _check_odf(archive: zipfile.ZipFile, names: list[str], label: str) -> None:
    # the document's own libraries, and those of objects embedded in it ("Object 1/Basic/")
    if any(f"/{name}".count("/Basic/") or f"/{name}".count("/Scripts/") for name in names):
        raise Refusal(OFFICE_MACROS.format(name=label))
    if "META-INF/manifest.xml" in names:
        manifest = _member(archive, "META-INF/manifest.xml", MEMBER_LIMIT)
        if b"encryption-data" in manifest:
            raise Refusal(OFFICE_ENCRYPTED.format(name=label))


def _member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """The start of one member: a bomb inflates no further than `limit`."""
    with archive.open(name) as member:
        return member.read(limit)


# --- OLE compound files: DOC, XLS, encrypted OOXML -----------------------------------------
def _ole_kind(path: Path, label: str) -> OfficeKind | None:
    try:
        with olefile.OleFileIO(str(path)) as ole:
            entries = [[part.lower() for part in entry] for entry in ole.listdir(True, True)]
            top = {entry[0] for entry in entries}
            if "encryptioninfo" in top or "encryptedpackage" in top:
                raise Refusal(OFFICE_ENCRYPTED.format(name=label))
            if {"macros", "_vba_project_cur"} & top or any(
                part in ("vba", "_vba_project") for entry in entries for part in entry
            ):
                raise Refusal(OFFICE_MACROS.format(name=label))
            if "worddocument" in top:
                _check_word(ole.openstream("WordDocument").read(12), label)
                return "doc"
            for name in ("Workbook", "Book"):
                if name.lower() in top:
                    with ole.openstream(name) as stream:
                        _check_biff(stream.read(BIFF_SCAN_LIMIT), label)
                    return "xls"
    except Refusal:
        raise
    except (OSError, EOFError, ValueError, struct.error, IndexError, KeyError, TypeError,
            RecursionError):  # fmt: skip
        why = "damaged OLE compound file"
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why)) from None
    return None


def _check_word(fib: bytes, label: str) -> None:
    if len(fib) < 12:
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="damaged Word header"))
    (flags,) = struct.unpack_from("<H", fib, 10)
    if flags & _WORD_ENCRYPTED:
        raise Refusal(OFFICE_ENCRYPTED.format(name=label))


def _check_biff(data: bytes, label: str) -> None:
    """Walk the workbook globals' records: FILEPASS means encrypted, a BOUNDSHEET of a macro
    sheet or VB module means macros. Stops at the globals' EOF or the end of what was read."""
    at = 0
    while at + 4 <= len(data):
        record, length = struct.unpack_from("<HH", data, at)
        body = data[at + 4 : at + 4 + length]
        if at == 0 and record != _BIFF_BOF:
            raise Refusal(DOCUMENT_DAMAGED.format(name=label, why="damaged Excel workbook"))
        if record == _BIFF_FILEPASS:
            raise Refusal(OFFICE_ENCRYPTED.format(name=label))
        if record == _BIFF_BOUNDSHEET and len(body) >= 6 and body[5] in _BIFF_MACRO_SHEETS:
            raise Refusal(OFFICE_MACROS.format(name=label))
        if record == _BIFF_EOF:
            return
        at += 4 + length


# --- text ----------------------------------------------------------------------------------
def _to_utf8(path: Path, label: str, charset: str | None) -> None:
    """Rewrite the text file at `path` as UTF-8, decoded piece by piece (never whole in memory)
    with the declared charset, else the first of TEXT_CHARSETS that decodes all of it."""
    candidates = [*_known(charset), *TEXT_CHARSETS]
    target = path.with_name(path.name + ".utf8")
    for encoding in candidates:
        if _transcode(path, target, encoding):
            os.replace(target, path)
            return
    target.unlink(missing_ok=True)
    why = "it is not text in a known character set"
    raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why))


def _known(charset: str | None) -> list[str]:
    if not charset:
        return []
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return []
    # "zlib", "base64", "rot13" are codecs too, but not character sets (zlib: a bomb)
    return [info.name] if info._is_text_encoding else []


def _transcode(source: Path, target: Path, encoding: str) -> bool:
    """`source` decoded as `encoding` into UTF-8 `target`; False if it is not that (or holds
    NUL or other control characters no text file has)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with source.open("rb") as reader, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
            while piece := reader.read(TEXT_PIECE):
                out.write(_checked_text(decoder.decode(piece)).encode("utf-8"))
            out.write(_checked_text(decoder.decode(b"", final=True)).encode("utf-8"))
    except (UnicodeDecodeError, ValueError, TypeError):
        return False
    return True


_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")  # tab, newlines, form feed are text


def _checked_text(text: str) -> str:
    if _CONTROL.search(text):
        raise ValueError("control characters")
    return text
