"""Text drawn straight at fax resolution: pages of lines → crisp 1-bit fax pages.

No PDF step: Pillow draws each line with IPA Gothic (a Japanese font Debian packages,
`fonts-ipafont-gothic`) onto a 1728 px wide page at 204 x 196 dpi, and the grey glyph edges
are cut at one threshold, so every stroke is solid black and OCR reads it. Standard
resolution (204 x 98) is drawn fine and halved in height before the cut.
Pages are given as typed lines (PageLines), laid out by textlayout.wrap and cover.py.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont, TiffImagePlugin

from faxmail.render.binarise import FAX_WIDTH, label_min_is_white
from faxmail.render.textlayout import wrap

FONT_PATHS = (
    Path("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"),
    Path("/usr/share/fonts/truetype/fonts-japanese-gothic.ttf"),
)
# at 204 dpi: 32 px ≈ 11 pt, the size of a business letter; 64 px a cover sheet's title
TEXT_PX, TITLE_PX = 32, 64
LINE_PX = {"text": 48, "title": 104, "rule": 32, "blank": 48}
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 160, 150, 150
INK_BELOW = 150  # grey level: darker is ink
# page heights in fine rows (the fax devices' 1728 px wide pages: A4 2292, Letter 2156)
FINE_HEIGHT = {"a4": 2292, "letter": 2156}

Style = Literal["text", "title", "rule", "blank"]


@dataclass(frozen=True)
class Line:
    style: Style
    text: str = ""


@dataclass(frozen=True)
class PageLines:
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Geometry:
    paper: Literal["a4", "letter"] = "a4"
    resolution: Literal["fine", "standard"] = "fine"

    @property
    def height(self) -> int:
        return FINE_HEIGHT[self.paper]

    @property
    def text_width(self) -> int:
        return FAX_WIDTH - 2 * MARGIN_X

    @property
    def text_height(self) -> int:
        return self.height - MARGIN_TOP - MARGIN_BOTTOM

    @property
    def y_dpi(self) -> int:
        return 196 if self.resolution == "fine" else 98


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont:
    for path in FONT_PATHS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    raise FileNotFoundError(f"no Japanese font: install fonts-ipafont-gothic ({FONT_PATHS[0]})")


def measure_text(text: str) -> float:
    return font(TEXT_PX).getlength(text)


def measure_title(text: str) -> float:
    return font(TITLE_PX).getlength(text)


def text_lines(text: str, geometry: Geometry) -> list[Line]:
    """`text` as wrapped text lines (empty lines kept)."""
    return [Line("text", line) for line in wrap(text, geometry.text_width, measure_text)]


def paginate(
    lines: Sequence[Line], geometry: Geometry, first_room: int | None = None
) -> list[PageLines]:
    """Lines onto pages; the first page has `first_room` px (the rest of a cover sheet)."""
    pages: list[PageLines] = []
    current: list[Line] = []
    room = geometry.text_height if first_room is None else first_room
    for line in lines:
        if LINE_PX[line.style] > room and (current or first_room is not None or pages):
            pages.append(PageLines(tuple(current)))
            current, room = [], geometry.text_height
            if line.style == "blank":
                continue  # no empty line at the top of a page
        current.append(line)
        room -= LINE_PX[line.style]
    if current:
        pages.append(PageLines(tuple(current)))
    return pages


def height_of(lines: Sequence[Line]) -> int:
    return sum(LINE_PX[line.style] for line in lines)


def draw_page(page: PageLines, geometry: Geometry) -> Image.Image:
    """One fax page: mode "1", 1728 px wide, a set bit for ink (the fax TIFF's convention)."""
    grey = Image.new("L", (FAX_WIDTH, geometry.height), 255)
    pen = ImageDraw.Draw(grey)
    y = MARGIN_TOP
    for line in page.lines:
        step = LINE_PX[line.style]
        if line.style == "rule":
            pen.rectangle((MARGIN_X, y + step // 2 - 2, FAX_WIDTH - MARGIN_X, y + step // 2 + 1), 0)
        elif line.style == "title":
            width = measure_title(line.text)
            x = max(MARGIN_X, (FAX_WIDTH - width) / 2)
            pen.text((x, y + 12), line.text, font=font(TITLE_PX), fill=0)
        elif line.text:
            pen.text((MARGIN_X, y + 6), line.text, font=font(TEXT_PX), fill=0)
        y += step
    if geometry.resolution == "standard":
        grey = grey.resize((FAX_WIDTH, geometry.height // 2), Image.Resampling.BOX)
    return grey.point(lambda level: 255 if level < INK_BELOW else 0, mode="1")


def ink_of(bits: Image.Image) -> Image.Image:
    """A page decoded from a fax TIFF (white paper) in our ink-bit convention."""
    return bits.convert("L").point(lambda level: 255 if level < 128 else 0, mode="1")


def write_pages(pages: Iterable[Image.Image], output: Path, y_dpi: int) -> None:
    """Pages (ink bits, 1728 px wide) as one G4 fax TIFF, one strip a page, min-is-white."""
    with open(output, "w+b") as handle, TiffImagePlugin.AppendingTiffWriter(handle) as tiff:
        for bits in pages:
            _append(tiff, bits, y_dpi)
    label_min_is_white(output)


def _append(tiff: TiffImagePlugin.AppendingTiffWriter, bits: Image.Image, y_dpi: int) -> None:
    stride = (bits.width + 7) // 8  # one strip per page, as binarise.write_fax_tiff writes
    bits.save(tiff, "TIFF", compression="group4", dpi=(204, y_dpi), strip_size=stride * bits.height)
    tiff.newFrame()
