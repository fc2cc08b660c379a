"""The documents the benchmarks fax, each with the text a reader should find on it.

PDFs are written with the test suite's PDF writer (infra.pdfs: fonts F1 = Helvetica, F2 = a
non-embedded Japanese CID font that Ghostscript substitutes with IPA, as for a mail from a
Japanese office suite). Everything is deterministic: the same bytes on every run.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from infra.pdfs import A4, A4_LANDSCAPE, Page, build_pdf, image_xobject, make_pdf, stream

#: TrueType fonts for text drawn into images (the scan); IPA Gothic comes with install-deps.
_FONTS = (
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


@dataclass(frozen=True)
class TestDocument:
    key: str
    title: str
    pdf: bytes
    reference: str  # the text on the page(s), for OCR accuracy
    lang: str  # tesseract language
    landscape: bool = False  # a renderer may turn it onto portrait paper: OCR tries turning
    ocr_band: tuple[float, float] | None = None  # OCR only this band (fractions of the height)
    kind: str = "pdf"  # or "jpeg": `pdf` then holds the image (bench/office.py)


def _escape(line: str) -> bytes:
    escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return escaped.encode("cp1252")


def _text(lines: list[str], *, x: float, top: float, size: float, leading: float) -> bytes:
    ops = [b"BT /F1 %.1f Tf %.1f TL %.1f %.1f Td" % (size, leading, x, top)]
    ops += [b"(" + _escape(line) + b") Tj T*" for line in lines]
    ops.append(b"ET")
    return b"\n".join(ops)


# --- letter ------------------------------------------------------------------------------

LETTER = [
    "Example Trading Co., Ltd.",
    "1-2-3 Marunouchi, Chiyoda-ku, Tokyo 100-0005",
    "",
    "26 November 2026",
    "",
    "Ms. Hanako Suzuki",
    "Purchasing Department, Sample Industries",
    "",
    "Re: Quotation No. Q-2026-0481",
    "",
    "Dear Ms. Suzuki,",
    "",
    "Thank you for your enquiry of 19 November. We are pleased to quote as follows:",
    "",
    "Item 1: Stainless bolts M8 x 40, 2,000 pcs at 24.95 JPY each: 49,900 JPY",
    "Item 2: Washers M8, 2,000 pcs at 3.10 JPY each: 6,200 JPY",
    "Item 3: Delivery to your Osaka warehouse: 8,500 JPY",
    "",
    "Total (excluding tax): 64,600 JPY. Delivery within 10 working days of your order.",
    "This quotation is valid until 31 December 2026. Payment: 30 days net.",
    "",
    "Please do not hesitate to contact us should you have any questions.",
    "",
    "Yours sincerely,",
    "",
    "Taro Yamada",
    "Sales Manager, phone +81 3-1234-5678",
]


def letter() -> TestDocument:
    pdf = build_pdf([Page(_text(LETTER, x=72, top=760, size=11, leading=15))])
    return TestDocument("letter", "letter (11 pt)", pdf, "\n".join(LETTER), "eng")


# --- dense text --------------------------------------------------------------------------

_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "invoice delivery order payment account number quantity price total shipment contract "
    "clause party agreement notice period warranty product service customer supplier"
)
_WORDS = _TEXT.split()


@functools.cache
def dense_lines() -> list[str]:
    rng = random.Random(5)  # noqa: S311 - test text, not a secret
    lines = []
    for n in range(78):
        words: list[str] = [f"{n + 1:02d}."]
        while len(" ".join(words)) < 100:
            word = rng.choice(_WORDS)
            if rng.random() < 0.08:
                word = f"{rng.randint(10, 9999)}.{rng.randint(0, 99):02d}"
            words.append(word)
        lines.append(" ".join(words)[:104].rstrip())
    return lines


def dense() -> TestDocument:
    lines = dense_lines()
    pdf = build_pdf([Page(_text(lines, x=40, top=805, size=8, leading=10))])
    return TestDocument("dense", "dense text (8 pt, 78 lines)", pdf, "\n".join(lines), "eng")


# --- Japanese ----------------------------------------------------------------------------

JAPANESE = [
    "株式会社サンプル工業 購買部 御中",
    "見積書の送付について",
    "拝啓 時下ますますご清栄のこととお慶び申し上げます。",
    "平素は格別のお引き立てを賜り、厚く御礼申し上げます。",
    "さて、先日ご依頼いただきました部品の見積書を",
    "添付のとおりお送りいたしますので、ご査収ください。",
    "納期は受注後十営業日、支払条件は月末締め翌月末払いです。",
    "本見積の有効期限は十二月三十一日までとなっております。",
    "ご不明な点がございましたら、営業部山田までお問い合わせください。",
    "今後とも変わらぬご愛顧を賜りますようお願い申し上げます。",
    "敬具",
    "東京都千代田区丸の内一丁目 株式会社例示商事 営業部",
]


def japanese() -> TestDocument:
    ops = [b"BT /F2 10.5 Tf 16 TL 60 770 Td"]
    for line in JAPANESE:
        ops.append(b"<" + line.encode("utf-16-be").hex().upper().encode() + b"> Tj T*")
    ops.append(b"ET")
    pdf = build_pdf([Page(b"\n".join(ops))])
    return TestDocument("japanese", "Japanese text (10.5 pt)", pdf, "\n".join(JAPANESE), "jpn")


# --- landscape table ---------------------------------------------------------------------


@functools.cache
def table_rows() -> list[list[str]]:
    rng = random.Random(9)  # noqa: S311 - test data
    head = ["Code", "Item", "Qty", "Unit", "Price", "Amount", "Due", "Note"]
    items = ["Bolt M8", "Nut M8", "Washer", "Bracket", "Hinge", "Panel", "Cable 2m", "Relay"]
    rows = [head]
    for n in range(24):
        qty = rng.randint(1, 900)
        price = rng.randint(100, 99999) / 100
        rows.append(
            [
                f"A-{1000 + n * 7}",
                items[n % len(items)],
                str(qty),
                "pcs",
                f"{price:,.2f}",
                f"{qty * price:,.2f}",
                f"2026-{1 + n % 12:02d}-{1 + n:02d}",
                "urgent" if n % 5 == 0 else "-",
            ]
        )
    return rows


def table() -> TestDocument:
    rows = table_rows()
    widths = [70, 120, 60, 50, 100, 120, 100, 80]
    x0, top, height = 60.0, 540.0, 19.0
    ops: list[bytes] = []
    for r in range(len(rows)):
        y = top - r * height
        if r == 0 or r % 2 == 0:
            # a grey header and light zebra stripes, as spreadsheets print them
            ops.append(
                b"%.2f g %.1f %.1f %d %.1f re f 0 g"
                % (0.80 if r == 0 else 0.92, x0, y - 5, sum(widths), height)
            )
    ops.append(b"0.5 w")
    for r in range(len(rows) + 1):
        y = top - r * height + height - 5
        ops.append(b"%.1f %.1f m %.1f %.1f l S" % (x0, y, x0 + sum(widths), y))
    x = x0
    for w in [0, *widths]:
        x += w
        ops.append(
            b"%.1f %.1f m %.1f %.1f l S"
            % (x, top + height - 5, x, top - 5 - (len(rows) - 1) * height)
        )
    for r, cells in enumerate(rows):
        x = x0
        for w, cell in zip(widths, cells, strict=True):
            ops.append(
                b"BT /F1 9 Tf %.1f %.1f Td (%s) Tj ET" % (x + 4, top - r * height, _escape(cell))
            )
            x += w
    pdf = build_pdf([Page(b"\n".join(ops), A4_LANDSCAPE)])
    reference = "\n".join(" ".join(cells) for cells in rows)
    return TestDocument(
        "table", "landscape table (9 pt, shaded rows)", pdf, reference, "eng", landscape=True
    )


# --- scanned letter on grey paper --------------------------------------------------------


def _font(size: int) -> ImageFont.FreeTypeFont:
    for path in _FONTS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    raise FileNotFoundError(f"none of {_FONTS}: run bench/install-deps")


def scan_image(lines: list[str], dpi: int = 200, seed: int = 3) -> Image.Image:
    """A letter as a flatbed scanner returns it: light grey, slightly uneven paper with noise,
    text a little soft, saved as JPEG."""
    width, height = round(8.27 * dpi), round(11.69 * dpi)
    rng = random.Random(seed)  # noqa: S311 - test data
    paper = bytes(200 + v % 25 for v in range(256))  # grey 200-224 of 255: recycled paper
    img = Image.frombytes("L", (width, height), rng.randbytes(width * height).translate(paper))
    draw = ImageDraw.Draw(img)
    font = _font(round(11 / 72 * dpi))
    line_height = round(15 / 72 * dpi)
    for n, line in enumerate(lines):
        draw.text((dpi, dpi + n * line_height), line, fill=35, font=font)
    return img.filter(ImageFilter.GaussianBlur(0.6))


def _image_page(img: Image.Image, size: tuple[int, int] = A4, extra: bytes = b"") -> Page:
    w, h = size
    content = b"q %d 0 0 %d 0 0 cm /Im1 Do Q\n" % (w, h) + extra
    return Page(content, size, {"Im1": image_xobject(img)})


def scan() -> TestDocument:
    pdf = build_pdf([_image_page(scan_image(LETTER))])
    return TestDocument(
        "scan", "scanned letter, grey paper (200 dpi JPEG)", pdf, "\n".join(LETTER), "eng"
    )


def scanned_pdf(pages: int, dpi: int = 150) -> bytes:
    """A multi-page scan (each page different noise), for the latency and load benchmarks."""
    return build_pdf(
        [_image_page(scan_image(LETTER, dpi=dpi, seed=n)) for n in range(1, pages + 1)]
    )


# --- photo -------------------------------------------------------------------------------

CAPTION = [
    "Figure 3: The new warehouse in Osaka seen from the south-east, April 2026.",
    "Floor area 4,800 square metres; loading bays 1-12 are on the left.",
]


def photo_image(width: int = 1240, height: int = 1000) -> Image.Image:
    """Something with the tonal range of a photograph: sky gradient, sun, hills, a building,
    sensor noise; grey like most scanned or faxed photos."""
    img = Image.linear_gradient("L").resize((width, height)).point(lambda v: 90 + v * 0.6)
    draw = ImageDraw.Draw(img)
    draw.ellipse((900, 120, 1060, 280), fill=245)
    for n, shade in enumerate((150, 115, 80)):
        y = 520 + n * 120
        draw.polygon(
            [
                (0, y + 60),
                (400, y - 40),
                (800, y + 30),
                (1240, y - 60),
                (1240, height),
                (0, height),
            ],
            fill=shade,
        )
    draw.rectangle((300, 430, 760, 760), fill=185)
    for col in range(6):
        for row in range(3):
            x, y = 330 + col * 72, 460 + row * 95
            draw.rectangle((x, y, x + 45, y + 60), fill=60)
    img = img.filter(ImageFilter.GaussianBlur(2))
    noise = Image.effect_noise((width, height), 12)
    return Image.blend(img, noise, 0.15)


def photo() -> TestDocument:
    img = photo_image()
    # photo in the upper part of the page, caption below it in 11 pt
    w, h = 495, round(495 * img.height / img.width)
    content = b"q %d 0 0 %d 50 %d cm /Im1 Do Q\n" % (w, h, 800 - h)
    content += _text(CAPTION, x=50, top=780 - h, size=11, leading=15)
    pdf = build_pdf([Page(content, A4, {"Im1": image_xobject(img)})])
    # legibility of the caption only: the picture itself has no text to read
    # from above the first line (baseline 780 - h) to below the second (765 - h), in PDF y
    # (upwards) turned into image rows (downwards); the picture ends at 800 - h
    band = (1 - (794 - h) / A4[1], 1 - (755 - h) / A4[1])
    return TestDocument(
        "photo", "photo with caption", pdf, "\n".join(CAPTION), "eng", ocr_band=band
    )


def legibility_documents() -> list[TestDocument]:
    return [letter(), dense(), japanese(), table(), scan(), photo()]


def text_pdf(pages: int) -> bytes:
    """The test suite's N-page text PDF (50 lines of 11 pt per page)."""
    return make_pdf(pages)


def padded_pdf(target_bytes: int) -> bytes:
    """A 2-page scanned PDF grown to ``target_bytes`` with an unreferenced stream: a big
    attachment whose size is in the mail but costs Ghostscript nothing (the memory benchmark
    measures the milter, not the renderer)."""
    base = scanned_pdf(2)
    pad = max(0, target_bytes - len(base) - 200)
    # incompressible, so base64 and any copy really are that big
    filler = stream(b"<< >>", random.Random(1).randbytes(pad))  # noqa: S311 - filler
    pages = [_image_page(scan_image(LETTER, dpi=150, seed=n)) for n in (1, 2)]
    return build_pdf(pages, {90: filler})
