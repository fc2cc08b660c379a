"""Documents office staff really attach, one per class of issue 13 (see tests/test_fax_classes.py).

Forms without appearance streams, soft-masked text, photos with each EXIF orientation, pages
with /Rotate, scans on grey paper, light and grey text. Built by hand like tests/infra/pdfs.py;
each has *corner marks* where geometry matters: a black square at the top left of the page as a
viewer shows it, and a smaller one at the top right, so a test can tell every rotation apart.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

from infra.pdfs import A4, A4_LANDSCAPE, Page, _text_lines, build_pdf, image_xobject, stream

_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"]
# Each line's words rotated: no two lines alike, so OCR sees no false columns between them.
LINES = [
    f"{i:02d} " + " ".join(_WORDS[i % 9 :] + _WORDS[: i % 9]) + f", {i * 1.25 + 3:.2f} EUR"
    for i in range(40)
]


def form_without_appearances_pdf() -> bytes:
    """A filled AcroForm: text fields with values, NeedAppearances true and no /AP at all."""
    values = ["Jane Example", "Invoice 2026-1138", "Lindenstrasse 12, Berlin", "24.95 EUR"]
    fields = list(range(60, 60 + len(values)))
    extra: dict[int, bytes] = {}
    for number, (value, top) in enumerate(zip(values, range(700, 400, -70), strict=False)):
        extra[fields[number]] = b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (field%d) /V (%s)" % (
            number,
            value.encode(),
        ) + b" /Rect [100 %d 500 %d] /F 4 /DA (/Helv 14 Tf 0 g) /P 9 0 R >>" % (top, top + 24)
    refs = b" ".join(b"%d 0 R" % n for n in fields)
    extra[70] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    extra[71] = (
        b"<< /Fields [" + refs + b"] /NeedAppearances true"
        b" /DR << /Font << /Helv 70 0 R >> >> /DA (/Helv 0 Tf 0 g) >>"
    )
    page = Page(_text_lines(["Order form"], top=780, size=16), entries=b"/Annots [" + refs + b"] ")
    return build_pdf([page], extra, catalog=b"/AcroForm 71 0 R ")


def soft_masked_text_pdf(text: bool = True) -> bytes:
    """Valid PDF: text under a luminosity soft mask (an ExtGState set inside the text block).

    text=False: the text block sets the soft mask and shows a space (gs warns, draws nothing).
    """
    group = b"<< /Type /XObject /Subtype /Form /BBox [0 0 595 842] /Group << /S /Transparency"
    mask_form = stream(group + b" /CS /DeviceGray >> >>", b"1 g 0 0 595 842 re f")
    extra = {
        80: mask_form,
        81: b"<< /Type /ExtGState /SMask << /Type /Mask /S /Luminosity /G 80 0 R >> >>",
    }
    lines = _text_lines(LINES if text else [" "], top=780).replace(b"Td", b"Td /GS1 gs", 1)
    return build_pdf([Page(lines, resources=b"/ExtGState << /GS1 81 0 R >>")], extra)


def _corner_marks(width: int, height: int) -> bytes:
    """Top-left 60 pt square, top-right 30 pt square (PDF user space, origin bottom left)."""
    return b"0 g 20 %d 60 60 re f %d %d 30 30 re f\n" % (height - 80, width - 50, height - 50)


def rotated_page_pdf(rotate: int = 90) -> bytes:
    """A landscape MediaBox shown portrait by /Rotate: what img2pdf builds for an EXIF-6 photo.

    The content is drawn so that the page *as a viewer shows it* (rotated `rotate` degrees
    clockwise) has the corner marks top left and top right, and text in reading direction.
    """
    width, height = A4_LANDSCAPE if rotate % 180 else A4
    shown_w, shown_h = (height, width) if rotate % 180 else (width, height)
    # the inverse of the viewer's turn: draw in shown space, map back to the MediaBox
    inverse = {
        0: b"1 0 0 1 0 0",
        90: b"0 1 -1 0 %d 0" % width,
        180: b"-1 0 0 -1 %d %d" % (width, height),
        270: b"0 -1 1 0 0 %d" % height,
    }[rotate % 360]
    content = b"q " + inverse + b" cm " + _corner_marks(shown_w, shown_h)
    content += _text_lines(LINES[:30], top=shown_h - 120) + b" Q"
    return build_pdf([Page(content, (width, height), entries=b"/Rotate %d " % rotate)])


def landscape_marked_pdf() -> bytes:
    """A landscape page with corner marks and text across it."""
    width, height = A4_LANDSCAPE
    content = _corner_marks(width, height) + _text_lines(LINES[:25], top=height - 120)
    return build_pdf([Page(content, A4_LANDSCAPE)])


# EXIF orientation n: how the stored pixels must be transformed to be shown upright (Pillow).
_TO_STORED = {
    1: [],
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_90],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


def upright_photo(width: int = 600, height: int = 800) -> Image.Image:
    """A photo as a viewer shows it: a light grey gradient, in its top corners a black square,
    big on the left, small on the right."""
    img = Image.linear_gradient("L").resize((width, height)).point(lambda v: 120 + v * 80 // 255)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, width // 8, width // 8), fill=0)
    draw.rectangle((width - width // 16, 0, width, width // 16), fill=0)
    return img.convert("RGB")


def exif_photo_jpeg(orientation: int, width: int = 600, height: int = 800) -> bytes:
    """`upright_photo` stored as a camera would with EXIF `orientation` (1 to 8)."""
    stored = upright_photo(width, height)
    # stored pixels are the upright picture with the inverse transform applied
    for op in _TO_STORED[orientation]:
        stored = stored.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def grey_paper_scan_pdf(paper: int = 165, seed: int = 3) -> bytes:
    """A 150 dpi scan of a letter on grey paper (mean `paper` of 255, noisy) with dark ink."""
    width, height = 1240, 1754
    levels = bytes(max(0, min(255, paper - 12 + value % 25)) for value in range(256))
    img = Image.frombytes("L", (width, height), random.Random(seed).randbytes(width * height))
    img = img.point(list(levels))
    draw = ImageDraw.Draw(img)
    for row, line in enumerate(LINES):
        draw.text((80, 80 + row * 40), line, fill=40, font_size=22)
    body = image_xobject(img)
    return build_pdf([Page(b"q 595 0 0 842 0 0 cm /Im1 Do Q", A4, {"Im1": body})])


def light_text_pdf() -> bytes:
    """9 pt text in 60 % grey, black text at 50 % fill opacity, a grey-shaded table, 50 % rules."""
    grey = _text_lines(LINES[:12], top=800, size=9).replace(b"BT", b"0.4 g BT", 1)
    faded = _text_lines(LINES[12:22], top=620, size=11).replace(b"BT", b"/GSA gs 0 g BT", 1)
    table = [b"q 0.75 g 40 300 515 135 re f Q"]
    for row in range(11):  # between the rows of text below (10 pt, 12 pt apart)
        table.append(b"q 0.5 G 0.25 w 40 %d m 555 %d l S Q" % (430 - row * 12, 430 - row * 12))
    rows = [f"Item {r:02d}   Widget type {r}   {r * 3} pcs   {r * 7.5:.2f} EUR" for r in range(10)]
    content = grey + b"\nq " + faded + b" Q\n" + b"\n".join(table) + b"\n"
    content += _text_lines(rows, top=420, size=10)
    extra = {90: b"<< /Type /ExtGState /ca 0.5 /CA 0.5 >>"}
    return build_pdf([Page(content, resources=b"/ExtGState << /GSA 90 0 R >>")], extra)
