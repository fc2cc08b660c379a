"""Check a fax TIFF before it is queued: Asterisk "sends" a truncated TIFF and reports SUCCESS.

The file is our own Ghostscript's (or tiffcrop's, or binarise.py's) output, so the check looks
for what a fault here leaves (a killed renderer, a full disk), in two steps:

1. In Python, the directory chain (`struct`, one small read per page, bounded and cycle-safe):
   the page count, every page's width (1728, the only width spandsp sends), 1 bit per sample,
   CCITT G3/G4, min-is-white, every tag's values and every strip inside the file; for G4,
   each strip also ends in the end-of-facsimile-block code libtiff writes (a strip whose tail
   was never written has zeros there). About 1 ms for 50 pages.
2. `tiffinfo -D` decodes the *last* page only (`-o` its directory): the page written last is
   the one a killed renderer cuts. About 4 ms, against 64 ms for decoding all 50 pages.

Ghostscript's own exit status (ghostscript.py) already refuses a run whose write failed midway;
a full decode of every page would mostly re-prove libtiff's encoder.

Why `tiffinfo` in a subprocess and not Pillow in-process: Pillow unpacks every 1-bit page to a
byte per pixel, counted 31 pages on a file cut at 60 % without an error (tiffinfo: exit 1),
and sends libtiff's complaints to the daemon's stderr, where nobody can act on them; a
subprocess cannot block or crash the milter's callback thread.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageSequence

from faxmail.core.processes import run_checker
from faxmail.core.replies import LOCAL_ERROR, Refusal

log = logging.getLogger("faxmail.tiffcheck")

FAX_WIDTH = 1728  # the only width spandsp sends
TIFFINFO_TIMEOUT_S = 30.0
TIFFCROP_TIMEOUT_S = 60.0

# TIFF tags and values we check (TIFF 6.0).
_WIDTH, _LENGTH, _BITS, _COMPRESSION, _PHOTOMETRIC = 256, 257, 258, 259, 262
_STRIP_OFFSETS, _SAMPLES, _ROWS_PER_STRIP, _STRIP_BYTES = 273, 277, 278, 279
_G3, _G4 = 3, 4
_MIN_IS_WHITE = 0
_SHORT, _LONG = 3, 4  # the field types these tags may have
_WIDTHS = {_SHORT: 2, _LONG: 4}
# bytes per value of each TIFF field type (BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE, ...)
_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_MAX_ENTRIES = 512  # ours have about 17; a bound on what one directory read may cost
_MAX_STRIPS = 100_000  # a 2292-row page in 1-row strips has 2292
_EOFB = 0x001001  # G4 end of facsimile block: two EOL codes, then up to 7 pad bits


@dataclass
class _Page:
    """What the check needs of one TIFF directory; -1: the tag is absent."""

    offset: int
    width: int = -1
    length: int = -1
    bits: int = 1  # the TIFF defaults when the tag is absent
    samples: int = 1
    compression: int = 1
    photometric: int = -1
    rows_per_strip: int = 2**32 - 1
    strip_offsets: list[int] = field(default_factory=list)
    strip_bytes: list[int] = field(default_factory=list)


class _Bad(Exception):
    """The file is not a TIFF we may queue; the message says why (for the log)."""


def validate_fax_tiff(path: Path, expected_pages: int) -> None:
    """Refusal(LOCAL_ERROR) unless there are exactly `expected_pages` bilevel 1728 px wide
    CCITT min-is-white pages, every strip lies inside the file, and the last page decodes.

    LOCAL_ERROR (451, temporary): the file is ours — made from input that was already vetted —
    so a bad one means a fault here (disk full, killed renderer), not a bad mail. The details
    go to the log, not to the sender.
    """
    problem = _problem(path, expected_pages)
    if problem:
        log.warning("fax TIFF %s rejected: %s", path.name, problem)
        raise Refusal(LOCAL_ERROR)


def _problem(path: Path, expected_pages: int) -> str | None:
    try:
        with open(path, "rb") as handle:
            fd = handle.fileno()
            pages = _read_pages(fd, limit=expected_pages + 1)
            for number, page in enumerate(pages, 1):
                _check_page(fd, number, page, os.fstat(fd).st_size)
    except _Bad as bad:
        return str(bad)
    except OSError as exc:
        return f"cannot read it: {exc}"
    if len(pages) != expected_pages:
        more = "more than " if len(pages) > expected_pages else ""
        return f"{more}{len(pages)} pages, expected {expected_pages}"
    return _decode(path, pages[-1].offset)


def _read_pages(fd: int, limit: int) -> list[_Page]:
    """The directories of the TIFF open as `fd`, at most `limit` of them (one more than
    expected is enough to know there are too many). Raises _Bad."""
    size = os.fstat(fd).st_size
    header = os.pread(fd, 8, 0)
    if header[:4] == b"II*\0":
        order = "<"
    elif header[:4] == b"MM\0*":
        order = ">"
    else:
        raise _Bad("not a classic TIFF (no II*/MM* header)")
    (offset,) = struct.unpack(order + "I", header[4:8])
    pages: list[_Page] = []
    seen: set[int] = set()
    while offset != 0 and len(pages) < limit:
        if offset in seen:
            raise _Bad(f"directory chain loops back to offset {offset}")
        seen.add(offset)
        page, offset = _read_directory(fd, order, offset, size, len(pages) + 1)
        pages.append(page)
    if not pages:
        raise _Bad("no directory")
    return pages


def _read_directory(fd: int, order: str, offset: int, size: int, number: int) -> tuple[_Page, int]:
    """One directory: (its page, the offset of the next directory or 0)."""
    if offset < 8 or offset + 2 > size:
        raise _Bad(f"page {number}: directory offset {offset} outside the file ({size} bytes)")
    (count,) = struct.unpack(order + "H", os.pread(fd, 2, offset))
    end = offset + 2 + 12 * count + 4
    if count == 0 or count > _MAX_ENTRIES or end > size:
        raise _Bad(f"page {number}: directory of {count} entries cut off or implausible")
    raw = os.pread(fd, 12 * count + 4, offset + 2)
    page = _Page(offset)
    for at in range(0, 12 * count, 12):
        tag, kind, values, inline = struct.unpack(order + "HHI4s", raw[at : at + 12])
        length = _TYPE_BYTES.get(kind, 1) * values
        outside = length > 4 and struct.unpack(order + "I", inline)[0] + length > size
        if outside and tag not in (_STRIP_OFFSETS, _STRIP_BYTES):  # those: _numbers below
            # a writer that puts values after the directory (Pillow) is cut there first
            raise _Bad(f"page {number}: values of tag {tag} outside the file")
        if tag in (_STRIP_OFFSETS, _STRIP_BYTES):
            numbers = _numbers(fd, order, kind, values, inline, size, number)
            if tag == _STRIP_OFFSETS:
                page.strip_offsets = numbers
            else:
                page.strip_bytes = numbers
        elif tag in (_WIDTH, _LENGTH, _BITS, _SAMPLES, _COMPRESSION, _PHOTOMETRIC, _ROWS_PER_STRIP):
            # BitsPerSample has one value per sample: with one sample, it fits inline
            if values != 1 or kind not in (_SHORT, _LONG):
                raise _Bad(f"page {number}: tag {tag} has {values} values of type {kind}")
            (value,) = struct.unpack(
                order + ("H" if kind == _SHORT else "I"), inline[: _WIDTHS[kind]]
            )
            attribute = {
                _WIDTH: "width",
                _LENGTH: "length",
                _BITS: "bits",
                _SAMPLES: "samples",
                _COMPRESSION: "compression",
                _PHOTOMETRIC: "photometric",
                _ROWS_PER_STRIP: "rows_per_strip",
            }[tag]
            setattr(page, attribute, value)
    (following,) = struct.unpack(order + "I", raw[12 * count :])
    return page, following


def _numbers(
    fd: int, order: str, kind: int, values: int, inline: bytes, size: int, number: int
) -> list[int]:
    """A SHORT or LONG array: inline when it fits in 4 bytes, else at the offset given."""
    if kind not in (_SHORT, _LONG) or not 0 < values <= _MAX_STRIPS:
        raise _Bad(f"page {number}: {values} strip values of type {kind}")
    length = _WIDTHS[kind] * values
    if length <= 4:
        data = inline[:length]
    else:
        (where,) = struct.unpack(order + "I", inline)
        if where + length > size:
            raise _Bad(f"page {number}: strip table outside the file")
        data = os.pread(fd, length, where)
    return list(struct.unpack(f"{order}{values}{'H' if kind == _SHORT else 'I'}", data))


def _check_page(fd: int, number: int, page: _Page, size: int) -> None:
    if page.width != FAX_WIDTH or page.length < 1:
        raise _Bad(f"page {number} is {page.width}x{page.length} pixels, not {FAX_WIDTH} wide")
    if page.bits != 1 or page.samples != 1:
        raise _Bad(f"page {number} has {page.samples} samples of {page.bits} bits")
    if page.compression not in (_G3, _G4):
        raise _Bad(f"page {number} has compression {page.compression}, not CCITT G3/G4")
    if page.photometric != _MIN_IS_WHITE:
        # spandsp's older TIFF reader sends min-is-black pages inverted
        raise _Bad(f"page {number} has photometric {page.photometric}, not min-is-white")
    rows = max(1, page.rows_per_strip)
    strips = (page.length + rows - 1) // rows
    if len(page.strip_offsets) != strips or len(page.strip_bytes) != strips:
        raise _Bad(
            f"page {number} has {len(page.strip_offsets)} strip offsets and "
            f"{len(page.strip_bytes)} byte counts for {strips} strips"
        )
    for start, length in zip(page.strip_offsets, page.strip_bytes, strict=True):
        if length < 1 or start < 8 or start + length > size:
            raise _Bad(f"page {number}: strip at {start} of {length} bytes outside the file")
        if page.compression == _G4 and not _ends_in_eofb(os.pread(fd, 4, start + length - 4)):
            raise _Bad(f"page {number}: strip at {start} does not end in an end-of-block code")


def _ends_in_eofb(tail: bytes) -> bool:
    """libtiff ends each G4 strip with EOFB (24 bits) and 0-7 zero bits of padding."""
    if len(tail) < 4:
        return False
    bits = int.from_bytes(tail, "big")
    return any(
        (bits >> pad) & 0xFFFFFF == _EOFB and bits & ((1 << pad) - 1) == 0 for pad in range(8)
    )


def _decode(path: Path, offset: int) -> str | None:
    """tiffinfo -D on the directory at `offset` only: its strips must decode without a word."""
    try:
        # limited=False: the file is ours, its pages checked above to be 1728 px wide G4
        result = run_checker(
            ["tiffinfo", "-D", "-o", str(offset), str(path.absolute())],
            TIFFINFO_TIMEOUT_S,
            limited=False,
        )
    except subprocess.TimeoutExpired:
        return f"tiffinfo took more than {TIFFINFO_TIMEOUT_S:.0f} s"
    errors = result.stderr.strip()
    if result.returncode != 0 or errors:
        first = errors.splitlines()[0] if errors else "no message"
        return f"last page does not decode: tiffinfo exit {result.returncode}: {first}"
    return None


def page_inks(tiff: Path) -> list[int]:
    """The black pixels of each page of our own (min-is-white) fax TIFF; asked only when gs
    warned, so the decoding (about 5 ms a page) is rare."""
    try:
        with Image.open(tiff) as image:
            return [page.convert("L").histogram()[0] for page in ImageSequence.Iterator(image)]
    except OSError:  # cut off (ours, not the document's fault): validate_fax_tiff refuses it
        return [1] * 10_000


def min_is_white(source: Path, target: Path) -> Path:
    """`tiffscaled` writes min-is-black pages, which older spandsp sends inverted.

    `tiffcrop -I both` inverts the data and the Photometric tag together: the same picture,
    labelled min-is-white, still one G4 strip per page (measured: pixel-identical, about 5 ms
    per page). Inverting with the transfer function instead would be undone by a PDF that sets
    its own (/TR in an ExtGState): the page came out all white.
    """
    try:
        result = subprocess.run(
            ["tiffcrop", "-I", "both", str(source), str(target)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIFFCROP_TIMEOUT_S,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        log.warning("tiffcrop took more than %g s", TIFFCROP_TIMEOUT_S)
        raise Refusal(LOCAL_ERROR) from None
    errors = result.stderr.decode("utf-8", "replace").strip()
    if result.returncode != 0 or errors:
        log.warning("tiffcrop failed (exit %d): %s", result.returncode, errors[:300])
        raise Refusal(LOCAL_ERROR)
    return target
