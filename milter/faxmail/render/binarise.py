"""Grey pages → fax bits, with the paper and ink levels of each page (and of each region).

Ghostscript renders grey at fax resolution (ghostscript.py, `grey_pages`) into a pipe
(greystream.py); each page then becomes black and white here, in-process, over Pillow's C
loops (no per-pixel Python), while gs renders the next:

- **Levels.** The local paper level comes from a miniature of 8 x 8 px block means, closed
  over ±24 px (text has lower block means than the paper between lines; a closing fills
  them in and keeps the edges of larger areas), so grey paper, a shaded table cell and a
  white margin each get their own;
  the ink level is the page's darkest 0.02 %. A pixel is ink when it is darker than
  `paper - INK_SHARE * (paper - ink)`: 9 pt text in 60 % grey, black at 50 % opacity and thin
  50 % rules stay solid on white paper, black text stays solid on a 75 % grey cell (which
  becomes white), and the noise of grey paper becomes white instead of a dot screen.
- **Photos** (a page whose mid-tones cover many grey levels and a large part of it) are
  stretched from ink to paper and screened (_screen: a clustered dot, cheaper on the line
  than error diffusion); photo mode (gs's error diffusion for every page) is unchanged.
- **Output**: one G4 strip per page, labelled min-is-white (spandsp's older reader sends
  min-is-black pages inverted); tiffcheck.validate_fax_tiff still checks the result.

Cost measured on this machine (a one-page fax): see bench/README.md, legibility section.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageFilter, TiffImagePlugin

FAX_WIDTH = 1728
BLOCK = 8  # px: the miniature's block, small enough to fit between lines of 11 pt text
SCREEN = 6  # px: the photo screen's cell, 34 lines per inch at 204 dpi
NEIGHBOURHOOD = 3  # 3 x 3 passes of the closing: 7 x 7 blocks, ±24 px, wider than a stroke
INK_SHARE = 0.35  # how far from paper to ink a pixel must be to count as ink
PAPER_QUANTILE = 0.02
INK_QUANTILE = 0.0002  # the darkest 0.02 % of a page (a line of 9 pt text has more) is its ink
FLAT_SHARE = 0.02  # less than this between ink and paper: one threshold for the page
PAPER_SPREAD = 24  # levels: local paper levels this close are one paper (one threshold)
MIN_CONTRAST = 24  # levels: an "ink" this close to the paper is noise, the page is blank
PHOTO_SHARE = 0.2  # mid-tones covering this much of a page...
PHOTO_LEVELS = 40  # ...spread over this many grey levels (each ≥ 0.02 %) make it a photo
_PHOTOMETRIC, _MIN_IS_WHITE, _STRIP_OFFSETS, _STRIP_BYTES = 262, 0, 273, 279
_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


@dataclass(frozen=True)
class Levels:
    paper: int  # the page's brightest 2 % (0-255)
    ink: int  # its darkest 0.02 %
    photo: bool
    mid_share: float = 0.0  # the share of pixels between the two (not near either)


def page_levels(histogram: Sequence[int]) -> Levels:
    """Paper, ink and photo-or-not of a page, from its 256-level histogram."""
    total = sum(histogram) or 1
    ink = _quantile(histogram, total * INK_QUANTILE)
    # the brightest 2 %: paper, whatever share of the page is ink (a black image, a scan)
    paper = 255 - _quantile(histogram[::-1], total * PAPER_QUANTILE)
    margin = (paper - ink) // 5
    mid = histogram[ink + margin + 1 : max(ink + margin + 1, paper - margin)]
    spread = sum(1 for count in mid if count >= total * 0.0002)
    photo = paper - ink >= MIN_CONTRAST and sum(mid) >= total * PHOTO_SHARE
    return Levels(paper, ink, photo and spread >= PHOTO_LEVELS, sum(mid) / total)


def _quantile(histogram: Sequence[int], count: float) -> int:
    """The first level by which `count` pixels have been seen."""
    seen = 0
    for level, pixels in enumerate(histogram):
        seen += pixels
        if seen >= count:
            return level
    return len(histogram) - 1


def binarise(page: Image.Image) -> Image.Image:
    """A grey page ("L") as a bilevel one ("1") in which 255 (a set bit) is *ink*."""
    levels = page_levels(quarter_sample(page).histogram())
    paper = functools.cache(lambda: closed_paper(page.reduce(BLOCK)))  # from block means
    cut = one_threshold(levels, paper)
    if cut is not None:
        return _ink_at_most(page, cut)
    if levels.photo:
        span = max(1, levels.paper - levels.ink)
        stretch = [min(255, max(0, (v - levels.ink) * 255 // span)) for v in range(256)]
        return _ink_where_darker(page.point(stretch), _screen(page.size))
    threshold = paper().point(_thresholds(levels)).resize(page.size, Image.Resampling.BILINEAR)
    return _ink_where_darker(page, threshold)


def quarter_sample(page: Image.Image) -> Image.Image:
    """Every 4th pixel of every 4th row: the same shares of levels, an eighth of the time."""
    return page.resize(
        (max(1, page.width // 4), max(1, page.height // 4)), Image.Resampling.NEAREST
    )


def one_threshold(levels: Levels, paper: Callable[[], Image.Image]) -> int | None:
    """The page's one cut (ink: a level at most this), or None when it needs more: a photo,
    or paper levels that differ by region. `paper`: closed_paper() of the page's BLOCK x
    BLOCK block means, asked for only when the histogram alone cannot tell. pagelook.py
    asks the same of a cheap look at a scan, so gs's 1-bit path cuts where binarise() would."""
    if levels.paper - levels.ink < MIN_CONTRAST:
        # blank, or all one grey (a black image filling the page): light white, dark black
        return 127
    if levels.photo:
        return None
    cut = _thresholds(levels)[levels.paper]
    if levels.mid_share < FLAT_SHARE:
        # next to nothing between ink and paper (text on plain paper, white or grey): no
        # second paper level to find, one threshold for the page (a third of the time)
        return cut
    present = [level for level, count in enumerate(paper().histogram()) if count]
    if present[-1] - present[0] <= PAPER_SPREAD:
        # about one paper level everywhere (a letter on white or grey paper; the miniature
        # sees the gaps between lines a little darker): one threshold, one pass
        return cut
    return None


def closed_paper(small: Image.Image) -> Image.Image:
    """The local paper level of each block: a closing (max, then min) of the block means.
    Text, darker than its paper and narrower than the filter, is filled in; a shaded cell
    or a photo keeps its edges (a max alone grows white into them)."""
    paper = small
    for rank_filter in [ImageFilter.MaxFilter] * NEIGHBOURHOOD + [
        ImageFilter.MinFilter
    ] * NEIGHBOURHOOD:
        paper = paper.filter(rank_filter(3))  # three 3 x 3 passes: one 7 x 7, 3 times faster
    return paper


def _thresholds(levels: Levels) -> list[int]:
    """For each local paper level, the darkest level that is still paper."""
    return [round(v - INK_SHARE * max(0, v - levels.ink)) for v in range(256)]


def _ink_at_most(page: Image.Image, cut: int) -> Image.Image:
    return page.point([255 if v <= cut else 0 for v in range(256)], "1")


def _ink_where_darker(page: Image.Image, threshold: Image.Image) -> Image.Image:
    """Ink (255) where `page` is at most `threshold`: their difference clips at 0 just there."""
    return ImageChops.subtract(page, threshold).point([255] + [0] * 255, "1")


def _screen(size: tuple[int, int]) -> Image.Image:
    """A clustered-dot screen of SCREEN x SCREEN px cells, as thresholds: dots grow from each
    cell's centre, so G4 codes a grey as short regular runs (measured on bench's photo page:
    140 kB, against 205 kB for gs's own fax screen and 511 kB for error diffusion). Built per
    photo page (about 3 ms), not cached: 4 MB a page size held by the daemon for ever."""
    half = SCREEN / 2
    order = sorted(
        ((x + 0.5 - half) ** 2 + (y + 0.5 - half) ** 2, x, y)
        for y in range(SCREEN)
        for x in range(SCREEN)
    )
    cell = Image.new("L", (SCREEN, SCREEN))
    for rank, (_, x, y) in enumerate(order):
        cell.putpixel((x, y), (2 * rank + 1) * 128 // (SCREEN * SCREEN))
    row = Image.new("L", (size[0], SCREEN))
    for x in range(0, size[0], SCREEN):
        row.paste(cell, (x, 0))
    screen = Image.new("L", size)
    for y in range(0, size[1], SCREEN):
        screen.paste(row, (0, y))
    return screen


def to_fax_width(bits: Image.Image) -> Image.Image:
    """Pad (white: 0) or cut the right edge to 1728 px, as gs's fax devices do (measured:
    pixel-identical)."""
    if bits.width > FAX_WIDTH:
        return bits.crop((0, 0, FAX_WIDTH, bits.height))
    if bits.width < FAX_WIDTH:
        padded = Image.new("1", (FAX_WIDTH, bits.height), 0)
        padded.paste(bits, (0, 0))
        return padded
    return bits


def write_fax_tiff(pages: Sequence[Path], output: Path, y_dpi: int) -> list[int]:
    """The grey page files, in order, as one G4 TIFF `output` (each file removed once read).

    Returns the ink pixels of each page (0: a blank page)."""
    return write_fax_pages(_read_and_remove(pages), output, y_dpi)


def _read_and_remove(pages: Sequence[Path]) -> Iterator[Image.Image]:
    for path in pages:
        with Image.open(path) as grey:
            grey.load()
            yield grey
        path.unlink()


def write_fax_pages(pages: Iterable[Image.Image], output: Path, y_dpi: int) -> list[int]:
    """Grey pages, in order, as one G4 TIFF `output`, each written as soon as it comes (the
    renderer's pages come from gs through a pipe while gs renders the next: greystream.py).

    Returns the ink pixels of each page (0: a blank page)."""
    inks = []
    with open(output, "w+b") as handle, TiffImagePlugin.AppendingTiffWriter(handle) as tiff:
        for grey in pages:
            bits = to_fax_width(binarise(grey if grey.mode == "L" else grey.convert("L")))
            inks.append(bits.histogram()[255])
            stride = (bits.width + 7) // 8
            bits.save(
                tiff,
                "TIFF",
                compression="group4",
                dpi=(204, y_dpi),
                strip_size=stride * bits.height,  # one strip per page
            )
            tiff.newFrame()
    if inks:  # no page (gs stopped before its first): nothing to label
        _label_min_is_white(output)
    return inks


def _label_min_is_white(path: Path) -> None:
    """Pillow labels bilevel pages min-is-black (0 = black); ours have a set bit for ink, so
    relabelling every directory min-is-white is the same picture, black on white. The padding
    Pillow leaves after the last page is cut off: the file ends where its data ends, so that
    tiffcheck sees a cut-off file as cut off."""
    with open(path, "r+b") as handle:
        fd = handle.fileno()
        order = "<" if os.pread(fd, 2, 0) == b"II" else ">"
        (offset,) = struct.unpack(order + "I", os.pread(fd, 4, 4))
        seen: set[int] = set()
        end = 8
        while offset and offset not in seen:
            seen.add(offset)
            (count,) = struct.unpack(order + "H", os.pread(fd, 2, offset))
            strip = {}
            for entry in range(offset + 2, offset + 2 + 12 * count, 12):
                tag, kind, values, value = struct.unpack(order + "HHII", os.pread(fd, 12, entry))
                if tag == _PHOTOMETRIC:
                    os.pwrite(fd, struct.pack(order + "H", _MIN_IS_WHITE), entry + 8)
                elif tag in (_STRIP_OFFSETS, _STRIP_BYTES):
                    strip[tag] = value  # one strip per page: the value is inline
                length = _TYPE_BYTES.get(kind, 1) * values
                if length > 4:
                    end = max(end, value + length)
            end = max(end, offset + 2 + 12 * count + 4, sum(strip.values()))
            (offset,) = struct.unpack(order + "I", os.pread(fd, 4, offset + 2 + 12 * count))
        os.ftruncate(fd, end)


# The same relabelling for the pages textpages.py draws (one convention for every fax page).
label_min_is_white = _label_min_is_white
