"""The pages of a fax as pixels: the TIFF the milter rendered, and a mailed PDF's own images.

A mailed fax PDF (the result mail's copy of the sent fax, or a received fax) holds one CCITT
image per page; decoded from the PDF's own bits, it must equal the rendered TIFF's page pixel
for pixel, on an A4 fax page (1728 px at 204 dpi is the 215 mm scan line, 2292 rows at 196 dpi
are A4's 297 mm).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pikepdf
from PIL import Image, ImageChops

#: A fax page of A4 paper in mm, and how far a PDF's page box may be from it.
A4_FAX_MM = (215.1, 297.0)
_MM_TOLERANCE = 0.5


def tiff_pages(path: Path) -> list[Image.Image]:
    """Every page of a TIFF, as 8-bit grey images."""
    pages = []
    with Image.open(path) as tiff:
        for index in range(getattr(tiff, "n_frames", 1)):
            tiff.seek(index)
            pages.append(tiff.convert("L"))
    return pages


def pdf_pages(pdf: bytes) -> list[tuple[tuple[float, float], Image.Image]]:
    """Each page's size in mm and its one image, decoded from the PDF's own (CCITT) bits."""
    pages = []
    with pikepdf.open(io.BytesIO(pdf)) as document:
        for page in document.pages:
            box = [float(v) for v in page.mediabox]
            size = ((box[2] - box[0]) / 72 * 25.4, (box[3] - box[1]) / 72 * 25.4)
            images = list(page.get_images().values())
            if len(images) != 1 or not isinstance(images[0], pikepdf.Stream):
                raise ValueError(f"a page of the PDF holds {len(images)} images, not one")
            pages.append((size, pikepdf.PdfImage(images[0]).as_pil_image().convert("L")))
    return pages


@dataclass(frozen=True)
class PageCheck:
    """One mailed page against the rendered one."""

    number: int
    size_px: tuple[int, int]
    problem: str | None  # None: the same pixels, on an A4 fax page

    def line(self) -> str:
        width, height = self.size_px
        return f"page {self.number}: {width}x{height} px, " + (
            self.problem or "pixel-identical to the rendered TIFF"
        )


def compare_pages(pdf: bytes, rendered: list[Image.Image]) -> list[PageCheck]:
    """The PDF's pages against the rendered TIFF's; a missing or extra page is a problem."""
    mailed = pdf_pages(pdf)
    checks = []
    for number in range(1, max(len(mailed), len(rendered)) + 1):
        if number > len(mailed) or number > len(rendered):
            where = "the PDF" if number > len(mailed) else "the rendered TIFF"
            checks.append(PageCheck(number, (0, 0), f"missing from {where}"))
            continue
        (size, image), original = mailed[number - 1], rendered[number - 1]
        checks.append(PageCheck(number, image.size, _difference(size, image, original)))
    return checks


def _difference(size: tuple[float, float], image: Image.Image, original: Image.Image) -> str | None:
    if any(abs(got - want) >= _MM_TOLERANCE for got, want in zip(size, A4_FAX_MM, strict=True)):
        return f"page box {size[0]:.1f} x {size[1]:.1f} mm, not an A4 fax page"
    if image.size != original.size:
        return f"the rendered page is {original.size[0]}x{original.size[1]} px"
    box = ImageChops.difference(image, original).getbbox()
    return None if box is None else f"differs from the rendered TIFF in {box}"
