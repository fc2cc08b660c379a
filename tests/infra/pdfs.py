"""Small, deterministic test documents: PDFs from Ghostscript, images from Pillow.

Ghostscript turns a PostScript program we write into a PDF. ``-dOmitInfoDate -dOmitID
-dOmitXMP`` drop the creation date and random document ID, so the same arguments give the
same bytes on every run (checked: identical md5 across runs).
"""

from __future__ import annotations

import functools
import io
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

#: A4 in PostScript points, the paper size fax works in.
A4 = (595, 842)


def _ps_string(text: str) -> str:
    """A PostScript string literal (Latin-1 only: the standard fonts have no CJK glyphs)."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return "(" + escaped.encode("latin-1", "replace").decode("latin-1") + ")"


@functools.cache
def make_pdf(pages: int = 1, text: str = "Test page", page_size: tuple[int, int] = A4) -> bytes:
    """An N-page PDF; page n shows "<text> n" (cached: treat the bytes as read-only)."""
    if pages < 1:
        raise ValueError("pages must be >= 1")
    width, height = page_size
    program = (
        f"<< /PageSize [{width} {height}] >> setpagedevice\n"
        "/Helvetica findfont 24 scalefont setfont\n"
        f"1 1 {pages} {{\n"
        f"  /n exch def 72 {height - 100} moveto {_ps_string(text + ' ')} show\n"
        "  n 10 string cvs show showpage\n"
        "} for\n"
    )
    with tempfile.TemporaryDirectory(prefix="fxm-pdf-") as tmp:
        out = Path(tmp) / "out.pdf"
        subprocess.run(
            [
                "gs",
                "-q",
                "-dSAFER",
                "-dBATCH",
                "-dNOPAUSE",
                "-sDEVICE=pdfwrite",
                "-dOmitInfoDate",
                "-dOmitID",
                "-dOmitXMP",
                f"-sOutputFile={out}",
                "-",
            ],
            input=program.encode("latin-1"),
            capture_output=True,
            check=True,
            timeout=60,
        )
        return out.read_bytes()


@functools.cache
def make_encrypted_pdf(
    pages: int = 1, user_password: str = "secret", owner_password: str = "owner"
) -> bytes:
    """:func:`make_pdf` encrypted with qpdf (AES-256); opening needs ``user_password``.

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


def _image(width: int, height: int, text: str) -> Image.Image:
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((4, 4, width - 5, height - 5), outline="black", width=3)
    draw.text((16, 16), text, fill="black")  # Pillow's built-in bitmap font: no files needed
    return img


@functools.cache
def make_png(width: int = 400, height: int = 300, text: str = "PNG test image") -> bytes:
    """A small RGB PNG with a frame and a line of text."""
    buf = io.BytesIO()
    _image(width, height, text).save(buf, format="PNG")
    return buf.getvalue()


@functools.cache
def make_jpeg(width: int = 400, height: int = 300, text: str = "JPEG test image") -> bytes:
    """Like :func:`make_png`, as a baseline JPEG."""
    buf = io.BytesIO()
    _image(width, height, text).save(buf, format="JPEG", quality=85)
    return buf.getvalue()
