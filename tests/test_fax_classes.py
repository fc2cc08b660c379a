"""Issue 13: fax what the sender sees, one test per class of document office staff attach.

Through the product's own Renderer (real Ghostscript, qpdf, libtiff); the documents come from
tests/infra/office_documents.py. Geometry is judged by corner marks: a big black square at the
top left of the page as a viewer shows it and a small one at its top right.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageSequence

from faxmail.core.documents import Document, DocumentKind
from faxmail.core.replies import Refusal
from faxmail.render.options import RenderOptions
from faxmail.render.renderer import Renderer
from infra import office_documents as office

MakeDoc = Callable[[DocumentKind, bytes], Document]


@pytest.fixture
def doc(tmp_path: Path) -> MakeDoc:
    counter = iter(range(1, 1000))

    def make(kind: DocumentKind, data: bytes) -> Document:
        number = next(counter)
        path = tmp_path / f"part-{number:02d}.{kind}"
        path.write_bytes(data)
        return Document(kind, path, f"attachment {number} (file{number}.{kind})")

    return make


def fax_pages(
    document: Document, tmp_path: Path, options: RenderOptions | None = None
) -> list[Image.Image]:
    workdir = tmp_path / f"work-{document.path.stem}"
    workdir.mkdir()
    fax = Renderer(options or RenderOptions()).render([document], workdir)
    with Image.open(fax.tiff) as image:
        return [frame.convert("L") for frame in ImageSequence.Iterator(image)]


def black_share(page: Image.Image) -> float:
    return page.histogram()[0] / (page.width * page.height)


def marks(page: Image.Image) -> tuple[str, str]:
    """(corner of the big mark, corner of the small one) of the content's bounding box."""
    left, top, right, bottom = ImageChops.invert(page).getbbox() or (0, 0, 1, 1)
    side = max(1, (right - left) // 10)  # the big mark fills it, the small one a quarter
    corners = {
        "top left": (left, top),
        "top right": (right - side, top),
        "bottom left": (left, bottom - side),
        "bottom right": (right - side, bottom - side),
    }
    shares = {
        name: black_share(page.crop((x, y, x + side, y + side))) for name, (x, y) in corners.items()
    }
    ranked = sorted(shares, key=shares.__getitem__, reverse=True)
    assert shares[ranked[0]] > 0.97 and shares[ranked[1]] > 0.2, shares
    assert shares[ranked[1]] < 0.95, shares  # the two marks are told apart by size
    return ranked[0], ranked[1]


UPRIGHT = ("top left", "top right")
# The one landscape rule: a page shown landscape is turned a quarter counter-clockwise, its
# top along the fax's left edge (gs's -dPDFFitPage rule for landscape pages).
TURNED = ("bottom left", "top left")


# --- 1. forms without appearance streams --------------------------------------------


def test_form_without_appearances_is_faxed_with_its_values(doc: MakeDoc, tmp_path: Path) -> None:
    (page,) = fax_pages(doc("pdf", office.form_without_appearances_pdf()), tmp_path)
    fields = page.crop((0, 250, page.width, page.height))  # below the heading
    assert black_share(fields) > 0.002  # the field values are drawn


# --- 2. soft-masked text -------------------------------------------------------------


def test_soft_masked_text_is_faxed(doc: MakeDoc, tmp_path: Path) -> None:
    (page,) = fax_pages(doc("pdf", office.soft_masked_text_pdf()), tmp_path)
    assert black_share(page) > 0.01


def test_a_tolerated_warning_with_nothing_drawn_is_still_refused(
    doc: MakeDoc, tmp_path: Path
) -> None:
    """gs warned and drew nothing: judged by the outcome, the document is not faxed."""
    document = doc("pdf", office.soft_masked_text_pdf(text=False))
    with pytest.raises(Refusal) as info:
        fax_pages(document, tmp_path)
    assert info.value.reply.code == "550"
    assert "invalid operator used in text block" in str(info.value)
    assert document.label in str(info.value)


# --- 3. and 4. orientation: EXIF, /Rotate, one landscape rule -------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("shown", ["portrait", "landscape"])
def test_photos_are_faxed_as_shown_for_every_exif_orientation(
    doc: MakeDoc, tmp_path: Path, orientation: int, shown: str
) -> None:
    size = (600, 800) if shown == "portrait" else (800, 600)
    (page,) = fax_pages(doc("jpeg", office.exif_photo_jpeg(orientation, *size)), tmp_path)
    assert marks(page) == (UPRIGHT if shown == "portrait" else TURNED)


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_rotated_pages_are_faxed_as_a_viewer_shows_them(
    doc: MakeDoc, tmp_path: Path, rotate: int
) -> None:
    (page,) = fax_pages(doc("pdf", office.rotated_page_pdf(rotate)), tmp_path)
    assert marks(page) == UPRIGHT


def test_landscape_pages_follow_the_same_rule_as_landscape_photos(
    doc: MakeDoc, tmp_path: Path
) -> None:
    (page,) = fax_pages(doc("pdf", office.landscape_marked_pdf()), tmp_path)
    assert marks(page) == TURNED
    (turned,) = fax_pages(doc("pdf", office.rotated_page_pdf(0)), tmp_path)
    assert marks(turned) == UPRIGHT


# --- 5. grey paper: levels per page ---------------------------------------------------


@pytest.mark.parametrize("paper", [215, 165, 130])
def test_grey_paper_becomes_white_and_its_text_stays_black(
    doc: MakeDoc, tmp_path: Path, paper: int
) -> None:
    """Lighter and darker than the fixed 0.8 whitening (204): no dot screen either way."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    document = doc("pdf", office.grey_paper_scan_pdf(paper))
    fax = Renderer(RenderOptions()).render([document], workdir)
    assert fax.size < 40_000  # a dot screen was 212 kB
    (page,) = fax_pages(document, tmp_path)
    margin = page.crop((1300, 100, 1650, 2200))  # the paper right of the text
    assert black_share(margin) < 0.001
    assert black_share(page) > 0.01  # the letter is there


# --- 6. light and grey text -----------------------------------------------------------


def test_light_text_and_rules_stay_solid(doc: MakeDoc, tmp_path: Path) -> None:
    """60 % grey text, black at 50 % opacity, 50 % grey rules: solid strokes, no dot screen;
    the 75 % grey cell behind the table becomes white."""
    (page,) = fax_pages(doc("pdf", office.light_text_pdf()), tmp_path)
    screened = fax_pages(
        doc("pdf", office.light_text_pdf()),
        tmp_path,
        RenderOptions(whiten_threshold=None, blacken_threshold=None),
    )[0]
    # A solid stroke has few black-white transitions per black pixel; a screen many.
    assert _transitions_per_black(page) < 0.5 * _transitions_per_black(screened)
    cell = page.crop((250, 1200, 1450, 1450))  # inside the shaded cell, right of the text
    assert black_share(cell) < 0.1


def _transitions_per_black(page: Image.Image) -> float:
    shifted = ImageChops.offset(page, 1, 0)
    edges = ImageChops.difference(page, shifted).histogram()[255]
    return edges / max(1, page.histogram()[0])
