"""Image attachments (PNG, JPEG, TIFF) → PDF pages for Ghostscript, after checking their size.

Pillow reads only headers here (frame count, pixel size), so a decompression bomb is refused
before anything is decoded; img2pdf then wraps the image in a PDF page.
"""

from __future__ import annotations

import struct
from pathlib import Path

import img2pdf
from PIL import Image

from .documents import Document
from .processes import short_reason
from .replies import DOCUMENT_DAMAGED, TOO_MANY_PAGES, Refusal

# Pixels per image frame. An A4 page scanned at 600 dpi has 35 M; Pillow's own bomb limit is
# 89 M (warning) / 179 M (error), and a PNG is decoded in-process by img2pdf.
IMAGE_PIXEL_LIMIT = 50_000_000

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
    """Frames of an image, reading headers only; refuses decompression bombs before decoding."""
    formats = {"png": ("PNG",), "jpeg": ("JPEG", "MPO"), "tiff": ("TIFF",)}[doc.kind]
    try:
        with Image.open(doc.path) as image:
            if image.format not in formats:
                why = f"it is not a {doc.kind.upper()} image"
                raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why))
            if doc.kind != "tiff":
                _check_pixels(doc, image.size)
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
    except Image.DecompressionBombError:
        why = f"the image has more than {IMAGE_PIXEL_LIMIT} pixels"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None
    except _IMAGE_ERRORS as error:
        why = f"the image cannot be read ({short_reason(str(error)) or type(error).__name__})"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None


def image_pdf(doc: Document, page_points: tuple[float, float], output: Path) -> Path:
    """An image as a PDF page of `page_points` (the fax's paper), shrunk to fit, never enlarged.

    img2pdf in-process (ran fine inside a libmilter callback thread), with its internal PDF
    writer: left to itself it writes through pikepdf when that is installed, and pikepdf is
    what deadlocked a milter daemon. JPEG and G4 data are copied without decoding; PNG with
    alpha or interlacing is decoded, hence the pixel limit checked before by image_pages().
    """
    layout = img2pdf.get_layout_fun(
        pagesize=page_points, fit=img2pdf.FitMode.shrink, auto_orient=True
    )
    try:
        pdf = img2pdf.convert(
            str(doc.path),
            layout_fun=layout,
            rotation=img2pdf.Rotation.ifvalid,
            engine=img2pdf.Engine.internal,
        )
    except _IMAGE_ERRORS as error:
        why = f"the image cannot be converted ({short_reason(str(error)) or type(error).__name__})"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None
    output.write_bytes(pdf)
    return output


def _check_pixels(doc: Document, size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1 or width * height > IMAGE_PIXEL_LIMIT:
        why = f"the image is {width}x{height} pixels (at most {IMAGE_PIXEL_LIMIT} allowed)"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why))
