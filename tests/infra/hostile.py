"""Hostile inputs for the end-to-end tests (tests/test_hostile.py), generated in code.

Each builder makes the bytes of one attack and nothing else: a mail (or MIME body), a PDF, an
image. They are small when sent (a few MB at most, except the deliberately oversized body) but
claim or expand to something huge: pages, pixels, nesting, decompressed bytes.
"""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, TiffImagePlugin

from infra.pdfs import make_jpeg, make_pdf, stream

# --- MIME ------------------------------------------------------------------------------------

#: A one-page PDF part, base64 as mailers send it.
PDF_PART = (
    b"Content-Type: application/pdf\r\n"
    b'Content-Disposition: attachment; filename="a.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(make_pdf(1)).replace(b"\n", b"\r\n")
)


def mail_head(author: str, to: str, message_id: str, extra: bytes = b"") -> bytes:
    """The headers every raw test mail starts with (CRLF, no blank line after them)."""
    return (
        f"From: {author}\r\nTo: {to}\r\nSubject: hostile\r\n"
        f"Date: Thu, 01 Jan 2026 09:00:00 +0900\r\nMessage-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
    ).encode() + extra


def multipart_without_boundary_parameter() -> bytes:
    """multipart/mixed with no boundary= : the parts cannot be found, only text remains."""
    return b"Content-Type: multipart/mixed\r\n\r\n--x\r\n" + PDF_PART + b"\r\n--x--\r\n"


def multipart_boundary_never_used() -> bytes:
    """A boundary is announced, the body never has it."""
    return b'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n--yy\r\n' + PDF_PART


def nested_multiparts(depth: int) -> bytes:
    """`depth` multiparts inside each other with a good PDF at the bottom."""
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(range(depth)))
    return head + PDF_PART + tail


def many_parts(count: int) -> bytes:
    """A multipart with `count` tiny text parts and a good PDF as the last one."""
    parts = [b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n"] * (count - 1)
    return (
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
        + b"".join(parts)
        + b"--B\r\n"
        + PDF_PART
        + b"\r\n--B--\r\n"
    )


def pdf_part_with_bad_base64() -> bytes:
    """A declared PDF whose base64 has a character outside the alphabet in the middle."""
    good = base64.encodebytes(make_pdf(1))
    broken = good[:200] + b"!*$" + good[203:]
    return (
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + broken.replace(b"\n", b"\r\n")
        + b"\r\n--B--\r\n"
    )


# --- PDFs ------------------------------------------------------------------------------------


def _raw_pdf(objects: dict[int, bytes]) -> bytes:
    """Objects 1..N (1 the catalog) as a PDF with a correct xref table; unlike
    infra.pdfs.build_pdf, nothing is added."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    size = max(objects) + 1
    for number in range(1, size):
        if number in objects:
            offsets[number] = len(out)
            out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += (
            b"%010d 00000 n \n" % offsets[number]
            if number in offsets
            else b"0" * 10 + b" 65535 f \n"
        )
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def _one_page_pdf(content: bytes, page_extra: bytes = b"", *more: bytes) -> bytes:
    """An A4 page (object 3) drawing `content`; `more` are objects 5, 6... it may refer to."""
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        + page_extra
        + b" >>",
        4: stream(b"<< >>", content),
    }
    objects.update({5 + n: body for n, body in enumerate(more)})
    return _raw_pdf(objects)


def thousands_of_pages_pdf(pages: int = 3000) -> bytes:
    """`pages` pages sharing one content stream: a few hundred KB for thousands of pages."""
    first_page = 4
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: stream(b"<< >>", b"0 0 m 100 100 l S"),
    }
    kids = b" ".join(b"%d 0 R" % (first_page + n) for n in range(pages))
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages)
    for n in range(pages):
        objects[first_page + n] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 3 0 R >>"
        )
    return _raw_pdf(objects)


def huge_page_pdf(width: int, height: int) -> bytes:
    """One page with a MediaBox of width x height points (the spec's maximum is 14 400)."""
    return make_pdf(1, text="Huge page", page_size=(width, height))


def deeply_nested_pdf(depth: int = 100_000) -> bytes:
    """A page whose dictionary holds an array nested `depth` deep (a parser's recursion)."""
    return _one_page_pdf(b"0 0 m 100 100 l S", b" /Deep " + b"[" * depth + b"]" * depth)


def nested_page_tree_pdf(depth: int) -> bytes:
    """One page at the bottom of `depth` /Pages nodes, each the only kid of the one above."""
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    for level in range(depth):
        node = 2 + level
        kid = node + 1
        parent = b" /Parent %d 0 R" % (node - 1) if level else b""
        objects[node] = b"<< /Type /Pages /Kids [%d 0 R] /Count 1%s >>" % (kid, parent)
    page = 2 + depth
    objects[page] = b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] /Contents %d 0 R >>" % (
        page - 1,
        page + 1,
    )
    objects[page + 1] = stream(b"<< >>", b"0 0 m 100 100 l S")
    return _raw_pdf(objects)


def deep_dictionaries_pdf(depth: int) -> bytes:
    """A content stream holding dictionaries nested `depth` deep (gs gives up: an error)."""
    return _one_page_pdf(b"<<" * depth + b">>" * depth + b" pop 0 0 m 10 10 l S")


def unbalanced_saves_pdf(count: int) -> bytes:
    """A content stream of `count` graphics-state saves (q) never restored: gs spends
    seconds per ten thousand, so it runs into the render time limit."""
    return _one_page_pdf(b"q " * count + b"0 0 m 10 10 l S")


def deflate_bomb(expanded_bytes: int, unit: int = 1 << 20) -> bytes:
    """A zlib stream of `expanded_bytes` zero bytes, built without compressing them all.

    A raw deflate block flushed with Z_FULL_FLUSH does not refer to what came before, so the
    block for one `unit` of zeros can be repeated; the Adler-32 of n zeros is (n % 65521, 1).
    """
    if expanded_bytes % unit:
        raise ValueError("expanded_bytes must be a multiple of unit")
    zeros = bytes(unit)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw.compress(zeros)
    raw.flush(zlib.Z_FULL_FLUSH)  # the first block may differ (no history): skip it
    block = raw.compress(zeros) + raw.flush(zlib.Z_FULL_FLUSH)
    end = raw.flush(zlib.Z_FINISH)
    adler = (expanded_bytes % 65521) << 16 | 1
    return b"\x78\xda" + block * (expanded_bytes // unit) + end + struct.pack(">I", adler)


def decompression_bomb_pdf(side: int = 131_072) -> bytes:
    """A page drawing a side x side 8-bit grey image (16 G pixels by default) whose data is
    Flate inside Flate: a few dozen KB in the mail."""
    data = zlib.compress(deflate_bomb(side * side), 9)
    image = stream(
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray"
        b" /BitsPerComponent 8 /Filter [/FlateDecode /FlateDecode] >>" % (side, side),
        data,
    )
    resources = b" /Resources << /XObject << /Im 5 0 R >> >>"
    return _one_page_pdf(b"q 595 0 0 842 0 0 cm /Im Do Q", resources, image)


def _ps_string(text: str) -> bytes:
    return (
        b"("
        + text.encode().replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
        + b")"
    )


def file_access_postscript(secret: Path, leak: Path, marker: Path) -> bytes:
    """PostScript that writes `marker`, and copies `secret` into `leak` if it can read it."""
    return (
        _ps_string(str(marker))
        + b" (w) file dup (pwned) writestring closefile\n"
        + _ps_string(str(secret))
        + b" (r) file 200 string readstring pop\n"
        + _ps_string(str(leak))
        + b" (w) file exch writestring\n"
    )


def postscript_in_pdf(secret: Path, leak: Path, marker: Path) -> bytes:
    """A real PDF (starts with %PDF-, passes qpdf) running file access through a PostScript
    XObject and the PS content operator, then drawing ordinary text."""
    code = file_access_postscript(secret, leak, marker)
    ps_xobject = stream(b"<< /Type /XObject /Subtype /PS >>", code)
    content = b"/PS1 Do\n" + _ps_string(code.decode()) + b" PS\nBT /F1 12 Tf 50 700 Td (text) Tj ET"
    return _one_page_pdf(content, b" /Resources << /XObject << /PS1 5 0 R >> >>", ps_xobject)


def postscript_then_pdf(secret: Path, leak: Path, marker: Path) -> bytes:
    """A PostScript program followed by a whole PDF: qpdf finds the PDF, gs would run the PS."""
    return b"%!PS\n" + file_access_postscript(secret, leak, marker) + b"showpage\n" + make_pdf(1)


# --- images ----------------------------------------------------------------------------------


def _tiff_entry(tag: int, kind: int, count: int, value: int) -> bytes:
    # kind 3 = SHORT (left-justified in the 4-byte value field), 4 = LONG
    packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    return struct.pack("<HHI", tag, kind, count) + packed


def multipage_tiff(pages: int, width: int = 64, height: int = 64) -> bytes:
    """A little-endian bilevel TIFF of `pages` pages that all share one white strip.

    Written by hand: Pillow would hold every frame in memory (5000 A4 frames: GBs).
    """
    row = (width + 7) // 8
    strip = b"\x00" * (row * height)  # WhiteIsZero: all white
    header = 8
    strip_at = header
    ifd_size = 2 + 10 * 12 + 4
    first_ifd = strip_at + len(strip)
    out = bytearray(struct.pack("<2sHI", b"II", 42, first_ifd))
    out += strip
    for page in range(pages):
        at = first_ifd + page * ifd_size
        following = at + ifd_size if page + 1 < pages else 0
        entries = [
            _tiff_entry(256, 4, 1, width),  # ImageWidth
            _tiff_entry(257, 4, 1, height),  # ImageLength
            _tiff_entry(258, 3, 1, 1),  # BitsPerSample
            _tiff_entry(259, 3, 1, 1),  # Compression: none
            _tiff_entry(262, 3, 1, 0),  # Photometric: WhiteIsZero
            _tiff_entry(273, 4, 1, strip_at),  # StripOffsets
            _tiff_entry(277, 3, 1, 1),  # SamplesPerPixel
            _tiff_entry(278, 4, 1, height),  # RowsPerStrip
            _tiff_entry(279, 4, 1, len(strip)),  # StripByteCounts
            _tiff_entry(297, 3, 2, page),  # PageNumber (page, 0)
        ]
        out += struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", following)
    return bytes(out)


def corrupt_tiffs() -> dict[str, bytes]:
    """Broken TIFFs, by what is broken."""
    good = multipage_tiff(1)
    first_ifd = struct.unpack_from("<I", good, 4)[0]
    return {
        "IFD past the end": good[:4] + struct.pack("<I", len(good) + 10_000) + good[8:],
        "strip past the end": good.replace(
            _tiff_entry(273, 4, 1, 8), _tiff_entry(273, 4, 1, len(good) + 10_000)
        ),
        "cut in the IFD": good[: first_ifd + 20],
        "IFD that loops": good[: len(good) - 4] + struct.pack("<I", first_ifd),
    }


def g4_tiff(private_tag: bool = False) -> bytes:
    """A one-page G4 fax TIFF (Pillow), optionally with an unknown private tag (libtiff warns)."""
    frame = Image.new("1", (1728, 2292), 1)
    ImageDraw.Draw(frame).text((100, 100), "G4 page", fill=0)
    extra = TiffImagePlugin.ImageFileDirectory_v2()
    if private_tag:
        extra[65000] = "private"
    out = io.BytesIO()
    frame.save(out, "TIFF", compression="group4", dpi=(204, 196), tiffinfo=extra)
    return out.getvalue()


def damaged_g4_tiff(seed: int = 1) -> bytes:
    """Headers intact, the G4 strip random bytes: only decoding the data shows the damage."""
    good = g4_tiff()
    with Image.open(io.BytesIO(good)) as image:
        assert isinstance(image, TiffImagePlugin.TiffImageFile)
        offset, count = image.tag_v2[273][0], image.tag_v2[279][0]
    damaged = bytearray(good)
    damaged[offset : offset + count] = random.Random(seed).randbytes(count)
    return bytes(damaged)


def cut_jpeg() -> bytes:
    """A JPEG cut off in its image data (headers whole)."""
    whole = make_jpeg(1200, 1600, "cut JPEG")
    return whole[: len(whole) * 2 // 3]
