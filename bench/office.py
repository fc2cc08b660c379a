"""Issue 13's six document classes for the legibility benchmark, with the text on each.

Built by tests/infra/office_documents.py (the documents the fax-class tests use), plus a phone
photo of a letter, held upright (EXIF 6): img2pdf makes it a landscape page with /Rotate 90.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

from infra import office_documents as office

from .documents import LETTER, TestDocument, _font

FORM_TEXT = "Order form\nJane Example\nInvoice 2026-1138\nLindenstrasse 12, Berlin\n24.95 EUR"
TABLE_ROWS = [
    f"Item {r:02d}   Widget type {r}   {r * 3} pcs   {r * 7.5:.2f} EUR" for r in range(10)
]


def phone_photo_jpeg(orientation: int = 6) -> bytes:
    """LETTER photographed on slightly grey, unevenly lit paper; stored as the camera's
    sensor saw it, with EXIF `orientation` saying how to show it."""
    width, height = 1200, 1600
    upright = Image.linear_gradient("L").resize((width, height)).point(lambda v: 200 + v // 6)
    draw = ImageDraw.Draw(upright)
    for row, line in enumerate(LETTER):
        draw.text((90, 110 + row * 48), line, fill=35, font=_font(28))
    noise = Image.frombytes("L", (width, height), random.Random(6).randbytes(width * height))  # noqa: S311
    upright = Image.blend(upright, noise.point(lambda v: 150 + v // 3), 0.08)
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=88, exif=exif.tobytes())
    return buffer.getvalue()


def office_documents() -> list[TestDocument]:
    lines = "\n".join(office.LINES)
    return [
        TestDocument(
            "form", "form without appearances", office.form_without_appearances_pdf(),
            FORM_TEXT, "eng",
        ),
        TestDocument("smask", "soft-masked text", office.soft_masked_text_pdf(), lines, "eng"),
        TestDocument(
            "phone", "phone photo, EXIF 6", phone_photo_jpeg(6), "\n".join(LETTER), "eng",
            kind="jpeg",
        ),
        TestDocument(
            "rotate", "page with /Rotate 90", office.rotated_page_pdf(90),
            "\n".join(office.LINES[:30]), "eng",
        ),
        TestDocument(
            "landscape2", "landscape page (marks)", office.landscape_marked_pdf(),
            "\n".join(office.LINES[:25]), "eng", landscape=True,
        ),
        TestDocument("greypaper", "scan on grey paper", office.grey_paper_scan_pdf(), lines, "eng"),
        TestDocument(
            "light", "light text, shaded table", office.light_text_pdf(),
            "\n".join([*office.LINES[:22], *TABLE_ROWS]), "eng",
        ),
    ]  # fmt: skip
