"""Image attachments (PNG, JPEG, TIFF) → PDF pages for Ghostscript, after checking them.

Pillow reads only headers first (frame count, pixel size), so a decompression bomb is refused
before anything is decoded; img2pdf then wraps the image in a PDF page. JPEG and G4 data are
copied into that page undecoded, and Ghostscript draws damaged data without a word (measured:
a half JPEG, a G4 strip of random bytes: one page of garbage, 250). So their data is decoded
once before: a damaged image is refused, not faxed (as a damaged PDF is).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import img2pdf
from PIL import Image, ImageOps

from faxmail.core.documents import Document
from faxmail.core.processes import run_checker, short_reason
from faxmail.core.replies import DOCUMENT_DAMAGED, RENDER_TOO_SLOW, TOO_MANY_PAGES, Refusal

# Pixels per image frame. An A4 page scanned at 600 dpi has 35 M; Pillow's own bomb limit is
# 89 M (warning) / 179 M (error), and a PNG is decoded in-process by img2pdf.
IMAGE_PIXEL_LIMIT = 50_000_000
_EXIF_ORIENTATION = 0x0112
_MIRRORED = {2, 4, 5, 7}  # EXIF orientations img2pdf cannot express as a page /Rotate
# `tiffinfo -D` decodes every strip of every page, strictly (exit 1 on a bad code word):
# 5 ms for one fax page, 79 ms for 50 (tiffcheck.py measured it).
TIFF_DECODE_TIMEOUT_S = 30.0

_IMAGE_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # includes PIL.UnidentifiedImageError
    ValueError,
    SyntaxError,  # Pillow's parsers raise it for bad headers
    EOFError,
    struct.error,
    Image.DecompressionBombError,
    img2pdf.ImageOpenError,
    img2pdf.AlphaChannelError,
    img2pdf.ExifOrientationError,
    img2pdf.JpegColorspaceError,
    img2pdf.NegativeDimensionError,
    img2pdf.PdfTooLargeError,
    img2pdf.UnsupportedColorspaceError,
)


def image_pages(doc: Document, max_pages: int) -> int:
    """Frames of an image, or Refusal: DOCUMENT_DAMAGED, TOO_MANY_PAGES, RENDER_TOO_SLOW.

    Sizes and the page count come from the headers alone, so a decompression bomb or a TIFF of
    thousands of pages is refused before anything is decoded; only then is the data decoded.
    """
    try:
        frames = _frames(doc, max_pages)
    except Image.DecompressionBombError:
        why = f"the image has more than {IMAGE_PIXEL_LIMIT} pixels"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None
    except _IMAGE_ERRORS as error:
        why = f"the image cannot be read ({short_reason(str(error)) or type(error).__name__})"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None
    if doc.kind == "tiff":
        _decode_tiff(doc)
    return frames


def _frames(doc: Document, max_pages: int) -> int:
    formats = {"png": ("PNG",), "jpeg": ("JPEG", "MPO"), "tiff": ("TIFF",)}[doc.kind]
    with Image.open(doc.path) as image:
        if image.format not in formats:
            why = f"it is not a {doc.kind.upper()} image"
            raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why))
        if doc.kind != "tiff":
            _check_pixels(doc, image.size)
            if doc.kind == "jpeg":
                # At 1/8 scale (64 times less memory) every byte is still read: a cut-off
                # JPEG raises "image file is truncated". PNGs are decoded by img2pdf anyway.
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
            return 1  # an MPO's further frames are previews; img2pdf takes the first
        frames = 0
        while True:
            frames += 1
            _check_pixels(doc, image.size)
            if frames > max_pages:
                pages = f"more than {max_pages}"
                raise Refusal(TOO_MANY_PAGES.format(pages=pages, limit=max_pages))
            try:
                image.seek(frames)
            except EOFError:
                return frames


def _decode_tiff(doc: Document) -> None:
    """Every strip of every page must decode (a subprocess: libtiff in-process would print
    its complaints to the daemon's stderr and carry on)."""
    argv = ["tiffinfo", "-D", str(doc.path.absolute())]  # absolute: never taken for an option
    try:
        result = run_checker(argv, TIFF_DECODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        why = f"decoding the image took more than {TIFF_DECODE_TIMEOUT_S:g} s"
        raise Refusal(RENDER_TOO_SLOW.format(why=why)) from None
    if result.returncode == 0:
        return  # warnings (an unknown private tag...) alone do not make an image damaged
    errors = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    detail = short_reason(errors[0]) if errors else f"exit {result.returncode}"
    why = f"the image data is damaged ({detail})"
    raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why))


def image_pdf(doc: Document, page_points: tuple[float, float], output: Path) -> Path:
    """An image as a PDF page of `page_points` (the fax's paper), shrunk to fit, never enlarged.

    img2pdf in-process (ran fine inside a libmilter callback thread), with its internal PDF
    writer: left to itself it writes through pikepdf when that is installed, and pikepdf is
    what deadlocked a milter daemon. JPEG and G4 data are copied without decoding; PNG with
    alpha or interlacing is decoded, hence the pixel limit checked before by image_pages().

    EXIF orientation is honoured exactly: img2pdf turns the page by /Rotate for 3, 6 and 8
    (which pdfcheck.normalise_pdf then applies to the content), and a mirrored photo (2, 4, 5,
    7: rare, a selfie camera's) is decoded and mirrored here, since /Rotate cannot mirror.
    """
    layout = img2pdf.get_layout_fun(
        pagesize=page_points, fit=img2pdf.FitMode.shrink, auto_orient=True
    )
    try:
        source = _unmirrored(doc, output.with_suffix(".upright"))
        pdf = img2pdf.convert(
            str(source),
            layout_fun=layout,
            rotation=img2pdf.Rotation.ifvalid,
            engine=img2pdf.Engine.internal,
        )
    except _IMAGE_ERRORS as error:
        why = f"the image cannot be converted ({short_reason(str(error)) or type(error).__name__})"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None
    output.write_bytes(pdf)
    return output


def _unmirrored(doc: Document, scratch: Path) -> Path:
    """`doc.path`, or for a mirrored single image the upright picture written to `scratch`."""
    if doc.kind == "tiff":
        return doc.path  # one orientation per frame; fax TIFFs do not mirror
    with Image.open(doc.path) as image:
        if image.getexif().get(_EXIF_ORIENTATION) not in _MIRRORED:
            return doc.path
        upright = ImageOps.exif_transpose(image)
        keep = {"dpi": image.info["dpi"]} if "dpi" in image.info else {}  # the same page size
        # JPEG stays JPEG (quality 95: a fax is one bit deep), PNG stays lossless
        if doc.kind == "jpeg":
            mode = upright.mode if upright.mode in ("L", "RGB") else "RGB"
            upright.convert(mode).save(scratch, "JPEG", quality=95, **keep)
        else:
            upright.save(scratch, "PNG", **keep)
    return scratch


def _check_pixels(doc: Document, size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1 or width * height > IMAGE_PIXEL_LIMIT:
        why = f"the image is {width}x{height} pixels (at most {IMAGE_PIXEL_LIMIT} allowed)"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why))
