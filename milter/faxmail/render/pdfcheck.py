"""Vet a PDF attachment before rendering: a PDF at all, readable, not encrypted, page count.

Why qpdf as a subprocess and not pikepdf in-process: this runs inside libmilter callback threads,
where `pikepdf.open(BytesIO)` was once seen to deadlock the whole daemon under Postfix.
In a libmilter thread driven by miltertest (no Postfix) both pikepdf.open(BytesIO) and by path
returned normally here, so what triggers the deadlock is unknown: nothing shows that opening by
path is safe, and a deadlock there stops all mail. A subprocess cannot deadlock us, is killed
on a timeout, gets its own CPU/memory limits, and a crash in a PDF parser cannot take the daemon
down. Measured (via prlimit, in a libmilter thread too): 5 to 6 ms per good file, the same for
1, 50 or 2000 pages; 14 ms for an encrypted or damaged one (a second call). `qpdf --check` is not
used: it decodes every stream (90 ms for one scanned page, 0.5 s for 2000 text pages) and finds
nothing that Ghostscript with -dPDFSTOPONERROR and its output check (ghostscript.py) lets through.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from faxmail.core.documents import Document
from faxmail.core.processes import run_checker
from faxmail.core.replies import (
    DOCUMENT_DAMAGED,
    PDF_ENCRYPTED,
    RENDER_TOO_SLOW,
    TOO_MANY_PAGES,
    Refusal,
)

QPDF_TIMEOUT_S = 30.0
_SCAN_LIMIT = 1_000_000  # bytes: a smaller PDF is searched for /Rotate, /Image (_mentions)
# qpdf's exit codes: 0 fine, 2 error, 3 warnings (it repaired something).
_QPDF_ERROR, _QPDF_WARNINGS = 2, 3
# Generic first lines of a qpdf complaint; the line after them says what is wrong.
_GENERIC = ("file is damaged", "Attempting to reconstruct cross-reference table")


def check_pdf(doc: Document, max_pages: int) -> int:
    """The page count of `doc`, or Refusal: PDF_ENCRYPTED, DOCUMENT_DAMAGED, TOO_MANY_PAGES."""
    require_pdf_header(doc)
    path = doc.path.absolute()  # absolute: a name can never be taken for an option
    rc, out, err = _run(["qpdf", "--show-npages", str(path)], QPDF_TIMEOUT_S)
    if rc == _QPDF_ERROR and _requires_password(path):
        raise Refusal(PDF_ENCRYPTED)
    if rc != 0:
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=_reason(rc, err, path)))
    try:
        pages = int(out.strip())
    except ValueError:
        why = "its page count cannot be read"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None
    if pages < 1:
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why="it has no pages"))
    if pages > max_pages:
        raise Refusal(TOO_MANY_PAGES.format(pages=pages, limit=max_pages))
    return pages


def normalise_pdf(doc: Document, output: Path) -> Path:
    """`doc` with every page's /Rotate applied to its content: `output`, or `doc.path` as it is.

    gs 10's -dPDFFitPage turns a `/Rotate 90` or `/Rotate 180` page upside down (measured; it is
    what img2pdf writes for a photo taken upright, EXIF 6); once the rotation is in the content
    (the MediaBox turns with it), the landscape rule (ghostscript.py) sees the page as a viewer
    shows it. Stream data is copied, never decoded: about 5 ms for a page of text or a scan,
    and a decompression bomb costs nothing here (`--generate-appearances` would decode: 137 s
    for the hostile 16 GiB bomb; gs draws fields without appearances by itself). A file qpdf
    cannot rewrite cleanly goes to gs as it is: check_pdf refuses it for the same reason as
    before, or gs does.
    """
    path = doc.path.absolute()  # absolute: a name can never be taken for an option
    if not _may_rotate(path):
        return path
    argv = ["qpdf", "--stream-data=preserve", "--flatten-rotation", "--", str(path)]
    rc, _, _ = _run([*argv, str(output.absolute())], QPDF_TIMEOUT_S)
    return output if rc == 0 else path


def _may_rotate(path: Path) -> bool:
    """Can a page of this PDF have /Rotate? Not if the key is nowhere in the file and there
    are no object streams (where page dictionaries could hide compressed): then qpdf's run
    (5 to 10 ms, in series before gs) is saved."""
    return _mentions(path, (b"/Rotate", b"/ObjStm"))


def may_have_images(path: Path) -> bool:
    """Can this PDF draw a raster image (a scan, a photo)? An image XObject is a stream, and
    no stream lies in an object stream: its /Subtype /Image is in the file's bytes. (A small
    inline image in a compressed content stream is missed: it is then thresholded as text.)"""
    return _mentions(path, (b"/Image",))


def _mentions(path: Path, tokens: tuple[bytes, ...]) -> bool:
    """Does the file contain any of `tokens`? True for a file over _SCAN_LIMIT bytes: the scan
    costs about 2 ms per MB (measured), more than what it could save."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_SCAN_LIMIT + 1)
    except OSError:
        return True  # qpdf (and check_pdf) will say what is wrong
    return len(data) > _SCAN_LIMIT or any(data.find(token) >= 0 for token in tokens)


def require_pdf_header(doc: Document) -> None:
    """The file must *start* with %PDF-.

    qpdf accepts a header anywhere in the first 1024 bytes, but Ghostscript decides by the first
    bytes whether it runs its PDF interpreter or PostScript: a PostScript program followed by a
    valid PDF passes qpdf and would run as PostScript (measured: it does, and -dSAFER then has to
    stop its file access).
    """
    try:
        with open(doc.path, "rb") as handle:
            head = handle.read(5)
    except OSError as error:
        why = f"it cannot be opened ({error.strerror})"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None
    if head != b"%PDF-":
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why="it is not a PDF file"))


def _requires_password(path: Path) -> bool:
    # --requires-password: 0 = a password is needed, 2 = not encrypted, 3 = encrypted, none needed
    rc, _, _ = _run(["qpdf", "--requires-password", str(path)], QPDF_TIMEOUT_S)
    return rc == 0


def _reason(rc: int, err: str, path: Path) -> str:
    """A short, path-free reason from qpdf's messages ("can't find startxref")."""
    if rc < 0:
        return f"the PDF checker stopped on signal {-rc}"
    lines = []
    for line in err.splitlines():
        text = line.strip()
        for prefix in ("WARNING: ", "qpdf: "):
            text = text.removeprefix(prefix)
        text = text.replace(f"{path}: ", "").replace(str(path), "the file").strip()
        if text:
            lines.append(text)
    if rc == _QPDF_ERROR:
        # the fatal error is the last line; the warnings before it are how qpdf got there
        lines.reverse()
    specific = [text for text in lines if text not in _GENERIC]
    return (specific or lines or ["the PDF structure cannot be read"])[0]


def _run(argv: list[str], timeout_s: float) -> tuple[int, str, str]:
    """qpdf's (exit code, stdout, stderr); RENDER_TOO_SLOW when it takes too long."""
    try:
        checked = run_checker(argv, timeout_s)
    except subprocess.TimeoutExpired:
        why = f"checking the PDF took more than {timeout_s:g} s"
        raise Refusal(RENDER_TOO_SLOW.format(why=why)) from None
    return checked.returncode, checked.stdout, checked.stderr
