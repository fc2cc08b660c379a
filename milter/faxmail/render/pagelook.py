"""A cheap look at each page of a fax: is one threshold enough, and where does it cut?

Painting a page 8-bit grey costs Ghostscript about 30-40 ms more than its 1-bit path (the
fax device with a transfer function: nearly free). binarise.py needs the grey only where one
threshold is not enough (a photo, paper levels that differ by region); most scans are one
sheet of paper with ink on it. So before gs starts, each page is looked at cheaply:

- a page that draws exactly one raster image and nothing else (a scan, a photo attachment:
  images.py makes those such pages) gets the image's own pixels at no more than the fax's
  resolution (Pillow's `draft` scales a larger JPEG down while decoding; a smaller decode
  would average away the darkest 0.02 % the ink level comes from), an 8-bit Flate image
  inflated to its known size and no further; placed where -dPDFFitPage puts it on the page,
  white around it, and asked binarise.one_threshold, the rule binarise() applies to gs's grey
  page: both paths decide the same way and cut at (nearly) the same level;
- a page without raster images is vector art: one threshold, the one gs gets for such faxes;
- anything else (an image with vector art, a mask, CMYK, a bit depth we do not decode): no
  cheap answer, the whole fax takes the grey path.

What each page draws comes from pdfpages.py (one sandboxed qpdf run, nothing decompressed
by qpdf); image data is inflated here only up to the image's own size.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from faxmail.render.binarise import (
    BLOCK,
    INK_SHARE,
    Levels,
    closed_paper,
    one_threshold,
    page_levels,
)
from faxmail.render.options import PAGE_POINTS, RenderOptions
from faxmail.render.pdfpages import NoCheapLook, PageView, PlacedImage, pdf_pages

log = logging.getLogger("faxmail.render")

LOOK_THREADS = 2  # pages decoded at once
MAX_LOOK_PIXELS = 40_000_000  # an A4 page scanned at 600 dpi has 35 M
VECTOR_CUT = int(255 * (1 - INK_SHARE))  # the cut of a page without raster images
SAMPLE = 4  # binarise.quarter_sample's step: the histogram is taken at 1/4 of fax pixels


def page_cuts(inputs: Sequence[Path], scratch: Path, options: RenderOptions) -> list[int] | None:
    """The one cut (ink: a grey level at most this) of every page of `inputs` in order, or
    None when any page needs the grey path (or the look could not tell)."""
    started = time.monotonic()
    try:
        views = [
            view
            for number, path in enumerate(inputs)
            for view in pdf_pages(path, scratch / f"look-{number:02d}")
        ]
        if len(views) > options.max_pages:
            raise NoCheapLook("more pages than allowed")  # check_pdf refuses the fax
        # Pillow decodes without the GIL, and gs has not started yet: both cores
        with ThreadPoolExecutor(LOOK_THREADS, thread_name_prefix="faxmail-look") as pool:
            cuts = list(pool.map(lambda view: page_cut(view, options), views))
    except NoCheapLook as why:
        log.info("grey pages: a page needs them (%s)", why)
        return None
    seconds = time.monotonic() - started
    log.info("one threshold per page, cut at %s (looked at in %.3f s)", cuts, seconds)
    return cuts


def page_cut(view: PageView, options: RenderOptions) -> int:
    """The cut binarise.py would choose for this page, or NoCheapLook."""
    if view.image is None:
        return VECTOR_CUT
    image = view.image
    if image.bits == 1:
        return VECTOR_CUT  # black and white already: any cut between gives the same bits
    levels, blocks = page_samples(image, view.box, options)
    cut = one_threshold(levels, lambda: closed_paper(blocks))
    if cut is None:
        why = "a photo" if levels.photo else "paper levels that differ by region"
        raise NoCheapLook(why)
    return cut


def page_samples(
    image: PlacedImage, box: tuple[float, float, float, float], options: RenderOptions
) -> tuple[Levels, Image.Image]:
    """The page's levels (from a 1/SAMPLE sample, as binarise() takes them) and its block
    means (1/BLOCK), with the image where -dPDFFitPage puts it and white paper around."""
    paper_w, paper_h = PAGE_POINTS[options.paper]
    width, height = box[2] - box[0], box[3] - box[1]
    if (width > height) != (paper_w > paper_h):
        paper_w, paper_h = paper_h, paper_w  # a landscape page is turned: its own canvas
    fit = min(paper_w / width, paper_h / height)
    off_x, off_y = (paper_w - width * fit) / 2, (paper_h - height * fit) / 2
    x0, y0, x1, y1 = image.box
    # device pixels of the image's box, top-down (PDF space is bottom-up)
    px = 204 / 72
    py = options.y_dpi / 72
    rect = (
        (off_x + (x0 - box[0]) * fit) * px,
        (paper_h - off_y - (y1 - box[1]) * fit) * py,
        (off_x + (x1 - box[0]) * fit) * px,
        (paper_h - off_y - (y0 - box[1]) * fit) * py,
    )
    page_size = (round(paper_w * px), round(paper_h * py))
    # at the fax's own resolution: what gs paints (a smaller decode averages the noise away,
    # and the page's darkest 0.02 % and brightest 2 % with it); larger only when it is larger
    pixels = decode_small(image, _scaled(rect, 1))
    sample = _on_paper(pixels, page_size, rect, SAMPLE, Image.Resampling.NEAREST)
    blocks = _on_paper(pixels, page_size, rect, BLOCK, Image.Resampling.BOX)
    return page_levels(sample.histogram()), blocks


def _scaled(rect: tuple[float, float, float, float], step: int) -> tuple[int, int]:
    return (max(1, round((rect[2] - rect[0]) / step)), max(1, round((rect[3] - rect[1]) / step)))


def _on_paper(
    pixels: Image.Image,
    page_size: tuple[int, int],
    rect: tuple[float, float, float, float],
    step: int,
    resample: Image.Resampling,
) -> Image.Image:
    canvas = Image.new("L", (max(1, page_size[0] // step), max(1, page_size[1] // step)), 255)
    canvas.paste(
        pixels.resize(_scaled(rect, step), resample), (round(rect[0] / step), round(rect[1] / step))
    )
    return canvas


def decode_small(image: PlacedImage, at_least: tuple[int, int]) -> Image.Image:
    """The image in grey, upright as on the page, decoded no larger than needed for
    `at_least` pixels (or NoCheapLook)."""
    if image.width * image.height > MAX_LOOK_PIXELS:
        raise NoCheapLook("an image too large to look at")  # gs subsamples it as it paints
    want = at_least[::-1] if image.turned else at_least
    if image.filter == "/DCTDecode":
        try:
            with Image.open(image.data) as jpeg:
                if jpeg.format != "JPEG" or jpeg.mode not in ("L", "RGB"):
                    raise NoCheapLook(f"a {jpeg.mode} JPEG")
                jpeg.draft("L", want)
                grey = jpeg.convert("L")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise NoCheapLook(f"a JPEG Pillow cannot read ({type(error).__name__})") from None
    elif image.filter in ("/FlateDecode", ""):
        channels = 3 if image.colour == "/DeviceRGB" else 1
        raw = _inflated(image.data, image.width * image.height * channels, image.filter)
        mode = "RGB" if channels == 3 else "L"
        grey = Image.frombytes(mode, (image.width, image.height), raw).convert("L")
    else:
        raise NoCheapLook(f"an image in {image.filter}")
    return grey.transpose(Image.Transpose.ROTATE_90) if image.turned else grey


def _inflated(path: Path, size: int, filter_name: str) -> bytes:
    """Exactly `size` bytes of (Flate-compressed) data, never inflating more."""
    with open(path, "rb") as handle:
        data = handle.read(size + 1 if not filter_name else None)
    if filter_name:
        try:
            data = zlib.decompressobj().decompress(data, size + 1)
        except zlib.error:
            raise NoCheapLook("damaged Flate data") from None
    if len(data) < size:
        raise NoCheapLook("image data shorter than its size")
    return data[:size]


def piped_transfer(fd: int, max_pages: int) -> list[str]:
    """gs arguments that give page k the transfer "ink at or below cuts[k]" (the last cut for
    any page beyond): the fax device's 1-bit path then cuts where binarise() would. gs calls
    BeginPage with the number of pages shown so far before each page (more than once), and a
    transfer set there holds for the page drawn next (measured).

    The cuts are read from file descriptor `fd` as they come (`cuts_text`): gs starts (30-40 ms
    of its own) while the look runs, and waits in its first BeginPage until they are there.

    What was read is kept in an array in global VM (slot 0: how many): the PDF interpreter
    draws each page inside save/restore, which would undo a count kept in local VM while the
    numbers already read stay read."""
    slots = max_pages + 3
    read = (
        f"/faxmail-cuts (/dev/fd/{fd}) (r) file def"
        f" /faxmail-cut true setglobal {slots} array false setglobal def faxmail-cut 0 0 put"
    )
    fill = (
        "{ dup faxmail-cut 0 get lt {exit} if"
        " faxmail-cuts token not { faxmail-cut 0 get 0 gt"
        " { faxmail-cut dup 0 get get } {0.5} ifelse } if"
        " faxmail-cut faxmail-cut 0 get 1 add 3 -1 roll put"
        " faxmail-cut 0 faxmail-cut 0 get 1 add put } loop"
    )
    pick = f"{max_pages + 1} min {fill} 1 add faxmail-cut exch get"
    transfer = "[ 1 index /gt cvx {1} {0} /ifelse cvx ] cvx exch pop settransfer"
    return [
        f"--permit-file-read=/dev/fd/{fd}",
        "-c",
        f"{read} << /BeginPage {{ {pick} {transfer} }} >> setpagedevice",
        "-f",
    ]


def cuts_text(cuts: Sequence[int]) -> bytes:
    """What piped_transfer's gs reads: each page's cut as a transfer threshold."""
    return (" ".join(f"{(cut + 0.5) / 255:.4f}" for cut in cuts) + "\n").encode("ascii")
