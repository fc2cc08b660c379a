"""binarise.py on synthetic grey pages: no Ghostscript, no files but the TIFF it writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from PIL import Image, ImageDraw

from faxmail.render.binarise import binarise, page_levels, to_fax_width, write_fax_tiff
from faxmail.render.tiffcheck import validate_fax_tiff

SIZE = (1728, 2292)


def ink_share(bits: Image.Image, box: tuple[int, int, int, int] | None = None) -> float:
    region = bits.crop(box) if box else bits
    return region.histogram()[255] / (region.width * region.height)


def letter(paper: int, ink: int) -> Image.Image:
    page = Image.new("L", SIZE, paper)
    draw = ImageDraw.Draw(page)
    for row in range(30):
        draw.text(
            (100, 100 + 60 * row), "The quick brown fox 24.95 EUR " * 2, fill=ink, font_size=30
        )
    return page


def test_levels_of_a_letter_on_grey_paper() -> None:
    levels = page_levels(letter(160, 30).histogram())
    assert levels.ink == 30 and levels.paper == 160 and not levels.photo


def test_a_gradient_is_a_photo() -> None:
    gradient = Image.linear_gradient("L").resize(SIZE)
    assert page_levels(gradient.histogram()).photo


def test_light_text_is_solid_and_grey_paper_white() -> None:
    for paper, ink in [(255, 0), (255, 153), (165, 40), (200, 128)]:
        bits = binarise(letter(paper, ink))
        assert ink_share(bits, (1400, 0, 1728, 2292)) == 0  # paper right of the text
        assert ink_share(bits, (100, 100, 1300, 1900)) > 0.05  # the text, solid


def test_text_on_a_shaded_cell_stays_and_the_cell_goes() -> None:
    page = letter(255, 0)
    ImageDraw.Draw(page).rectangle((0, 1000, 1728, 1400), fill=191)
    ImageDraw.Draw(page).text((100, 1100), "Total 24.95 EUR", fill=0, font_size=40)
    bits = binarise(page)
    assert ink_share(bits, (600, 1050, 1700, 1350)) < 0.01  # the cell, right of its text
    assert ink_share(bits, (100, 1100, 420, 1140)) > 0.1


def test_black_and_blank_pages() -> None:
    assert ink_share(binarise(Image.new("L", SIZE, 0))) == 1
    assert ink_share(binarise(Image.new("L", SIZE, 255))) == 0
    assert ink_share(binarise(Image.new("L", SIZE, 230))) == 0


def test_a_photo_is_screened_not_cut() -> None:
    bits = binarise(Image.linear_gradient("L").resize(SIZE))
    shares = [ink_share(bits, (0, y, 1728, y + 120)) for y in range(0, 2292 - 120, 400)]
    assert shares == sorted(shares, reverse=True)  # dark at the top, lighter going down
    assert 0.2 < ink_share(bits) < 0.8


def test_width_is_padded_or_cut_on_the_right() -> None:
    assert to_fax_width(Image.new("1", (1686, 10), 0)).size == (1728, 10)
    assert to_fax_width(Image.new("1", (1734, 10), 0)).size == (1728, 10)


def test_written_tiff_passes_the_fax_check(tmp_path: Path) -> None:
    pages = []
    for number in range(3):
        path = tmp_path / f"page-{number:05d}.pgm"
        letter(200, 20).save(path)
        pages.append(path)
    output = tmp_path / "fax.tif"
    write_fax_tiff(pages, output, 196)
    validate_fax_tiff(output, 3)  # G4, one strip, min-is-white, 1728 wide, decodes
    info = subprocess.run(["tiffinfo", str(output)], capture_output=True, text=True).stdout
    assert info.count("min-is-white") == 3 and info.count("Rows/Strip: 2292") == 3
    assert not any(path.exists() for path in pages)
    with Image.open(output) as fax:
        assert fax.convert("L").getpixel((1500, 1000)) == 255  # white paper, black ink
        assert fax.convert("L").getextrema() == (0, 255)
