"""Small, deterministic test documents: hand-written PDFs, images from Pillow.

Every PDF here is written object by object with a correct xref table (no PDF library, no
Ghostscript), so a checker that complains about one of them complains about the content, not
about our writer, and the same arguments give the same bytes on every run.
``make_*`` are the everyday documents (cached: the same bytes object on each call); the other
makers each show one property a renderer test is about (landscape, grey scan, endless forms...).
"""

from __future__ import annotations

import functools
import io
import random
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

#: A4 in PostScript points, the paper size fax works in.
A4 = (595, 842)
A4_LANDSCAPE = (842, 595)

# Resources every page gets: a standard Latin font and a non-embedded Japanese CID font (the
# renderer has to substitute it, as it would for a mail from a Japanese office suite).
_FONT_RESOURCES = b"/Font << /F1 5 0 R /F2 6 0 R >>"
_FIXED_OBJECTS: dict[int, bytes] = {
    5: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    6: (
        b"<< /Type /Font /Subtype /Type0 /BaseFont /KozMinPr6N-Regular-UniJIS-UCS2-H"
        b" /Encoding /UniJIS-UCS2-H /DescendantFonts [7 0 R] >>"
    ),
    7: (
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /KozMinPr6N-Regular"
        b" /CIDSystemInfo << /Registry (Adobe) /Ordering (Japan1) /Supplement 6 >>"
        b" /FontDescriptor 8 0 R /DW 1000 >>"
    ),
    8: (
        b"<< /Type /FontDescriptor /FontName /KozMinPr6N-Regular /Flags 6"
        b" /FontBBox [-437 -340 1147 1317] /ItalicAngle 0 /Ascent 1317 /Descent -349"
        b" /CapHeight 742 /StemV 80 >>"
    ),
}
_FIRST_FREE = 9


# --- the PDF writer ------------------------------------------------------------------


@dataclass
class Page:
    content: bytes
    size: tuple[int, int] = A4
    # name → complete object body (dict + stream) of an XObject used by this page, or the
    # number of an object passed to build_pdf in extra_objects
    xobjects: dict[str, bytes | int] = field(default_factory=dict)
    resources: bytes = b""  # more resource entries, e.g. b"/ExtGState << /GS1 50 0 R >>"
    entries: bytes = b""  # more page dictionary entries, e.g. b"/Rotate 90"


def stream(dictionary: bytes, data: bytes) -> bytes:
    """An object body holding a stream; /Length is filled in."""
    return (
        dictionary.rstrip(b">").rstrip()
        + b" /Length %d >>\nstream\n" % len(data)
        + data
        + b"\nendstream"
    )


def build_pdf(
    pages: Sequence[Page], extra_objects: dict[int, bytes] | None = None, catalog: bytes = b""
) -> bytes:
    """Serialise pages into a PDF 1.7 file. Objects 1 to 8 are fixed; pages follow.

    `catalog`: more entries of the document catalog, e.g. b"/AcroForm 60 0 R".
    """
    objects: dict[int, bytes] = dict(_FIXED_OBJECTS)
    objects.update(extra_objects or {})
    next_num = max([_FIRST_FREE, *(n + 1 for n in objects)])
    kids: list[int] = []
    for page in pages:
        page_num, content_num = next_num, next_num + 1
        next_num += 2
        xobject_refs = []
        for name, body in page.xobjects.items():
            if isinstance(body, int):
                xobject_refs.append(b"/%s %d 0 R" % (name.encode(), body))
                continue
            objects[next_num] = body
            xobject_refs.append(b"/%s %d 0 R" % (name.encode(), next_num))
            next_num += 1
        resources = _FONT_RESOURCES
        if xobject_refs:
            resources += b" /XObject << " + b" ".join(xobject_refs) + b" >>"
        if page.resources:
            resources += b" " + page.resources
        objects[page_num] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] " % page.size
            + (b"/Resources << " + resources + b" >> /Contents %d 0 R " % content_num)
            + page.entries
            + b">>"
        )
        objects[content_num] = stream(b"<< >>", page.content)
        kids.append(page_num)
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R " + catalog + b">>"
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    size = max(objects) + 1
    for num in range(1, size):
        if num not in objects:
            continue
        offsets[num] = out.tell()
        out.write(b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    for num in range(1, size):
        if num in offsets:
            out.write(b"%010d 00000 n \n" % offsets[num])
        else:
            out.write(b"0000000000 65535 f \n")
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref))
    return out.getvalue()


def _text_lines(lines: Sequence[str], top: int = 800, size: int = 11) -> bytes:
    """Helvetica text (Windows-1252 only: the font has no CJK glyphs; others become '?')."""
    ops = [b"BT /F1 %d Tf %d TL 50 %d Td" % (size, size + 2, top)]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(b"(" + escaped.encode("cp1252", "replace") + b") Tj T*")
    ops.append(b"ET")
    return b"\n".join(ops)


def latin_text(lines: Sequence[str], top: int = 800, size: int = 11) -> bytes:
    """Content operators for Helvetica lines from ``top`` down (Windows-1252 only)."""
    return _text_lines(lines, top, size)


def japanese_text(text: str, x: int, y: int, size: int = 14) -> bytes:
    """Content operators for one line in the non-embedded Japanese CID font (UTF-16BE)."""
    hexed = text.encode("utf-16-be").hex().upper().encode()
    return b"BT /F2 %d Tf %d %d Td <" % (size, x, y) + hexed + b"> Tj ET\n"


def text_page(heading: str, size: tuple[int, int] = A4) -> Page:
    """A page of text as a letter has it: a heading line, then 50 lines of 11 pt."""
    lines = [heading, ""]
    lines += [f"{i:02d} The quick brown fox jumps over the lazy dog. 24.95 EUR" for i in range(50)]
    return Page(_text_lines(lines, top=size[1] - 40), size)


# --- PDFs ----------------------------------------------------------------------------


@functools.cache
def make_pdf(pages: int = 1, text: str = "Test page", page_size: tuple[int, int] = A4) -> bytes:
    """An N-page text PDF; page n is headed "<text> n"."""
    if pages < 1:
        raise ValueError("pages must be >= 1")
    return build_pdf([text_page(f"{text} {n}", page_size) for n in range(1, pages + 1)])


@functools.cache
def make_encrypted_pdf(
    pages: int = 1, user_password: str = "secret", owner_password: str = "owner"
) -> bytes:
    """:func:`make_pdf` encrypted with qpdf (AES-256); opening needs ``user_password``.

    An empty ``user_password`` opens without asking (only the owner's rights are restricted).
    qpdf picks a random IV/ID, so unlike :func:`make_pdf` the bytes differ between
    processes (within one, the cache returns the same bytes).
    """
    with tempfile.TemporaryDirectory(prefix="fxm-pdf-") as tmp:
        src, dst = Path(tmp) / "in.pdf", Path(tmp) / "out.pdf"
        src.write_bytes(make_pdf(pages))
        subprocess.run(
            ["qpdf", "--encrypt", user_password, owner_password, "256", "--", str(src), str(dst)],
            capture_output=True,
            check=True,
            timeout=60,
        )
        return dst.read_bytes()


def landscape_pdf() -> bytes:
    """A landscape A4 page with a table whose rows run across it."""
    rows = [" | ".join(f"r{r}c{c}" for c in range(14)) for r in range(30)]
    return build_pdf([Page(_text_lines(rows, top=560, size=9), A4_LANDSCAPE)])


def japanese_pdf() -> bytes:
    """Japanese text in a non-embedded CID font (UniJIS-UCS2-H: UTF-16BE code units)."""
    text = "東京都千代田区 ファクス送信のテストです。請求書を添付します。"
    hexed = text.encode("utf-16-be").hex().upper().encode()
    content = b"BT /F2 14 Tf 50 780 Td <" + hexed + b"> Tj ET\n" + _text_lines(["Latin line"], 740)
    return build_pdf([Page(content)])


def image_xobject(img: Image.Image) -> bytes:
    """A DCT (JPEG) image XObject for a greyscale or RGB Pillow image."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    space = b"/DeviceGray" if img.mode == "L" else b"/DeviceRGB"
    head = b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s" % (
        img.width,
        img.height,
        space,
    )
    return stream(head + b" /BitsPerComponent 8 /Filter /DCTDecode >>", buf.getvalue())


def scanned_page_image(width: int = 1240, height: int = 1754, seed: int = 1) -> Image.Image:
    """A 150 dpi 'scan': light-grey noisy paper with black text on it."""
    paper = bytes(205 + value % 21 for value in range(256))
    noise = random.Random(seed).randbytes(width * height).translate(paper)
    img = Image.frombytes("L", (width, height), noise)
    draw = ImageDraw.Draw(img)
    for row in range(40):
        draw.text((80, 80 + row * 40), f"{row:02d} Scanned letter on grey paper 24.95", fill=0)
    return img


def scanned_pdf() -> bytes:
    body = image_xobject(scanned_page_image())
    return build_pdf([Page(b"q 595 0 0 842 0 0 cm /Im1 Do Q", A4, {"Im1": body})])


def nested_forms_pdf(depth: int = 40, fanout: int = 4) -> bytes:
    """Each form draws the one below it `fanout` times: fanout**depth operations in ~3 KB."""
    extra: dict[int, bytes] = {}
    base = 100
    extra[base] = stream(b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] >>", b"0 0 1 1 re f")
    for level in range(1, depth + 1):
        num = base + level
        draws = b" ".join(b"q /X Do Q" for _ in range(fanout))
        head = b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10]"
        head += b" /Resources << /XObject << /X %d 0 R >> >> >>" % (num - 1)
        extra[num] = stream(head, draws)
    return build_pdf([Page(b"q /Top Do Q", A4, {"Top": base + depth})], extra)


def own_transfer_pdf() -> bytes:
    """Text drawn after the PDF sets its own transfer function (/TR in an ExtGState)."""
    extra = {50: b"<< /Type /ExtGState /TR /Identity >>"}
    content = b"/GS1 gs\n" + text_page("Page 1").content
    page = Page(content, resources=b"/ExtGState << /GS1 50 0 R >>")
    return build_pdf([page], extra)


def garbage_stream_pdf(seed: int = 7) -> bytes:
    """Sound structure (qpdf is content), but a Flate stream that is random bytes."""
    noise = random.Random(seed).randbytes(3000)
    form = stream(
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 600 800] /Filter /FlateDecode >>", noise
    )
    return build_pdf([Page(b"q /G Do Q\n" + text_page("Page 1").content, A4, {"G": form})])


def postscript_xobject_pdf(target: Path) -> bytes:
    """A PDF whose PostScript XObject and `PS` operator try to write `target` and read /etc."""
    code = (
        f"({target}) (w) file dup (pwned) writestring closefile\n"
        "(/etc/passwd) (r) file 100 string readstring pop pop\n"
    ).encode()
    ps_xobject = stream(b"<< /Type /XObject /Subtype /PS >>", code)
    content = b"/PS1 Do\n(" + code.replace(b"(", b"\\(").replace(b")", b"\\)") + b") PS\n"
    content += _text_lines(["harmless text"], 700)
    return build_pdf([Page(content, A4, {"PS1": ps_xobject})])


def postscript_polyglot(target: Path) -> bytes:
    """PostScript that calls itself a PDF (.pdf name, PDF objects further down)."""
    return (
        f"%!PS\n({target}) (w) file dup (pwned) writestring closefile\nshowpage\n".encode()
        + make_pdf(1)
    )


# --- images --------------------------------------------------------------------------


def _image(width: int, height: int, text: str, mode: str = "RGB") -> Image.Image:
    img = Image.new(mode, (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((4, 4, width - 5, height - 5), outline="black", width=3)
    draw.text((16, 16), text, fill="black")  # Pillow's built-in bitmap font: no files needed
    return img


@functools.cache
def make_png(
    width: int = 400, height: int = 300, text: str = "PNG test image", mode: str = "RGB"
) -> bytes:
    """A small PNG (RGB, or e.g. RGBA with an alpha channel) with a frame and a line of text."""
    buf = io.BytesIO()
    _image(width, height, text, mode).save(buf, format="PNG")
    return buf.getvalue()


@functools.cache
def make_jpeg(width: int = 400, height: int = 300, text: str = "JPEG test image") -> bytes:
    """Like :func:`make_png`, as a baseline JPEG."""
    buf = io.BytesIO()
    _image(width, height, text).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def black_png_bytes(width: int = 600, height: int = 800) -> bytes:
    """An all-black page: easy to tell apart from text pages in the fax."""
    buf = io.BytesIO()
    Image.new("L", (width, height), 0).save(buf, "PNG")
    return buf.getvalue()


def multipage_tiff_bytes(pages: int) -> bytes:
    """A G4 TIFF of `pages` bilevel 200 dpi pages, each with one line of text."""
    frames = [Image.new("1", (1700, 2200), 1) for _ in range(pages)]
    for number, frame in enumerate(frames, 1):
        ImageDraw.Draw(frame).text((100, 100), f"TIFF page {number}", fill=0)
    buf = io.BytesIO()
    frames[0].save(
        buf, "TIFF", save_all=True, append_images=frames[1:], compression="group4", dpi=(200, 200)
    )
    return buf.getvalue()


def png_bomb_bytes(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG header claiming width x height pixels, with one tiny (incomplete) IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
