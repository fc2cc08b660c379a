"""The front pages (cover sheet, the mail's text: cover.py) as fax pages: alone, or put
before the documents' pages Ghostscript rendered. Drawn with Pillow (textpages.py): no gs."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from PIL import Image, ImageSequence

from faxmail.core.replies import TOO_MANY_PAGES, Refusal
from faxmail.render.cover import FrontMatter, front_pages
from faxmail.render.textpages import Geometry, draw_page, ink_of, write_pages
from faxmail.render.tiffcheck import validate_fax_tiff


def front_only(front: FrontMatter, geometry: Geometry, max_pages: int, final: Path) -> int:
    """Text pages only, as the fax TIFF `final` (checked, then renamed into place); their
    count. Refusal TOO_MANY_PAGES."""
    pages = front_pages(front, geometry, 0)
    if len(pages) > max_pages:
        raise Refusal(TOO_MANY_PAGES.format(pages=len(pages), limit=max_pages))
    partial = final.with_name("fax.tif.partial")
    write_pages((draw_page(page, geometry) for page in pages), partial, geometry.y_dpi)
    validate_fax_tiff(partial, len(pages))
    os.replace(partial, final)
    return len(pages)


def with_front(front: FrontMatter, geometry: Geometry, documents_tiff: Path, pages: int) -> int:
    """Put the front pages before the documents' `pages` in `documents_tiff`; their count."""
    laid_out = front_pages(front, geometry, pages)
    joined = documents_tiff.with_name("joined.tif.partial")
    with Image.open(documents_tiff) as documents:
        drawn = (draw_page(page, geometry) for page in laid_out)
        theirs = (ink_of(page) for page in ImageSequence.Iterator(documents))
        write_pages(itertools.chain(drawn, theirs), joined, geometry.y_dpi)
    os.replace(joined, documents_tiff)
    return len(laid_out)
