"""The fax TIFF check (tiffcheck.py) against damaged copies of a real rendered fax.

A 3-page fax from the real renderer is patched in one place per test, found with a small TIFF
walker of its own here (not the module's), so each test shows one fault the check must catch.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from faxmail.core.documents import Document
from faxmail.core.replies import LOCAL_ERROR, Refusal
from faxmail.render.options import RenderOptions
from faxmail.render.renderer import Renderer
from faxmail.render.tiffcheck import validate_fax_tiff
from infra.pdfs import make_pdf

PAGES = 3


@dataclass(frozen=True)
class Entry:
    at: int  # file offset of the 12-byte entry
    tag: int
    kind: int
    count: int
    value: int  # the inline value (first SHORT/LONG) or the offset of the values


@dataclass(frozen=True)
class Directory:
    at: int
    entries: dict[int, Entry]
    next_at: int  # file offset of the next-directory pointer

    def value(self, tag: int) -> int:
        return self.entries[tag].value


def directories(data: bytes) -> list[Directory]:
    """Little-endian only: what our Ghostscript writes."""
    assert data[:4] == b"II*\0"
    (offset,) = struct.unpack_from("<I", data, 4)
    found = []
    while offset:
        (count,) = struct.unpack_from("<H", data, offset)
        entries = {}
        for n in range(count):
            at = offset + 2 + 12 * n
            tag, kind, values = struct.unpack_from("<HHI", data, at)
            value = struct.unpack_from("<H" if kind == 3 and values == 1 else "<I", data, at + 8)
            entries[tag] = Entry(at, tag, kind, values, value[0])
        next_at = offset + 2 + 12 * count
        found.append(Directory(offset, entries, next_at))
        (offset,) = struct.unpack_from("<I", data, next_at)
    return found


@pytest.fixture(scope="module")
def fax(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("fax")
    pdf = folder / "in.pdf"
    pdf.write_bytes(make_pdf(PAGES))
    work = folder / "work"
    work.mkdir()
    rendered = Renderer(RenderOptions()).render([Document("pdf", pdf, "a.pdf")], work)
    return rendered.tiff.read_bytes()


def check(tmp_path: Path, data: bytes | bytearray, pages: int = PAGES) -> None:
    path = tmp_path / "fax.tif"
    path.write_bytes(bytes(data))
    validate_fax_tiff(path, pages)


def rejected(
    tmp_path: Path, data: bytes | bytearray, caplog: pytest.LogCaptureFixture, pages: int = PAGES
) -> str:
    """The reason logged for the rejection (the sender only ever sees LOCAL_ERROR)."""
    with pytest.raises(Refusal) as info:
        check(tmp_path, data, pages)
    assert info.value.reply == LOCAL_ERROR
    return caplog.text


def put(data: bytearray, at: int, fmt: str, value: int) -> bytearray:
    struct.pack_into(fmt, data, at, value)
    return data


Patch = Callable[[bytearray, list[Directory]], bytearray]


def patched(fax: bytes, patch: Patch) -> bytearray:
    data = bytearray(fax)
    return patch(data, directories(fax))


# --- what must pass ---------------------------------------------------------------------


def test_a_rendered_fax_passes(tmp_path: Path, fax: bytes) -> None:
    check(tmp_path, fax)


def test_big_endian_tiff_passes(tmp_path: Path) -> None:
    """tiffcp -B writes the same fax in Motorola byte order: the walker reads both."""
    little = tmp_path / "little.tif"
    page = Image.new("1", (1728, 200), 1)
    page.save(little, compression="group4")
    big = tmp_path / "big.tif"
    subprocess.run(["tiffcp", "-B", "-c", "g4", str(little), str(big)], check=True)
    # Pillow writes mode "1" as min-is-black: relabel, as the renderer's tiffcrop does
    subprocess.run(["tiffset", "-s", "262", "0", str(big)], check=True)
    assert big.read_bytes()[:4] == b"MM\0*"
    validate_fax_tiff(big, 1)


# --- page count, chain ------------------------------------------------------------------


@pytest.mark.parametrize("expected", [1, 2, 4, 50])
def test_page_count_mismatch(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture, expected: int
) -> None:
    reason = rejected(tmp_path, fax, caplog, pages=expected)
    assert f"expected {expected}" in reason


def test_directory_chain_loop(tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture) -> None:
    # the last directory points back to the first: a reader without a bound never ends
    data = patched(fax, lambda d, dirs: put(d, dirs[-1].next_at, "<I", dirs[0].at))
    for expected in (PAGES, PAGES + 5):
        caplog.clear()
        assert "loops back" in rejected(tmp_path, data, caplog, pages=expected)


def test_one_directory_too_many_is_enough(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # a longer chain is not followed to its end: one directory past the expected count tells
    assert "more than 2 pages, expected 1" in rejected(tmp_path, fax, caplog, pages=1)


def test_directory_pointing_at_itself(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    data = patched(fax, lambda d, dirs: put(d, dirs[0].next_at, "<I", dirs[0].at))
    assert "loops back" in rejected(tmp_path, data, caplog, pages=100)


def test_directory_outside_the_file(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    data = patched(fax, lambda d, dirs: put(d, dirs[1].next_at, "<I", len(fax) + 100))
    assert "outside the file" in rejected(tmp_path, data, caplog)


@pytest.mark.parametrize("data", [b"", b"GIF89a" + b"\0" * 100, b"II*\0\0\0\0\0"])
def test_not_a_tiff(tmp_path: Path, data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    rejected(tmp_path, data, caplog)


# --- truncation and strips --------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture, keep: float
) -> None:
    rejected(tmp_path, fax[: int(len(fax) * keep)], caplog)


def test_one_byte_short(tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture) -> None:
    assert "outside the file" in rejected(tmp_path, fax[:-1], caplog)


def test_strip_offset_past_the_end(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # page 2's strip (the check must look at every page, not only the decoded last one)
    data = patched(fax, lambda d, dirs: put(d, dirs[1].entries[273].at + 8, "<I", len(fax)))
    assert "page 2: strip" in rejected(tmp_path, data, caplog)


def test_strip_tags_missing(tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture) -> None:
    # StripOffsets renamed to a private tag: the page has no strips at all
    data = patched(fax, lambda d, dirs: put(d, dirs[1].entries[273].at, "<H", 65000))
    assert "page 2 has 0 strip offsets" in rejected(tmp_path, data, caplog)


def test_empty_strip(tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture) -> None:
    data = patched(fax, lambda d, dirs: put(d, dirs[0].entries[279].at + 8, "<I", 0))
    assert "page 1: strip" in rejected(tmp_path, data, caplog)


def test_strip_tail_never_written(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Zeros where page 1's data ends (a write that never happened): no end-of-block code."""

    def zero_tail(d: bytearray, dirs: list[Directory]) -> bytearray:
        end = dirs[0].value(273) + dirs[0].value(279)
        d[end - 64 : end] = bytes(64)
        return d

    assert "end-of-block" in rejected(tmp_path, patched(fax, zero_tail), caplog)


def test_last_page_that_does_not_decode(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage inside the last page's strip, its ends intact: only decoding finds it."""

    def scramble(d: bytearray, dirs: list[Directory]) -> bytearray:
        start, length = dirs[-1].value(273), dirs[-1].value(279)
        middle = start + length // 3
        d[middle : middle + 200] = b"\xff\x00\x13" * 66 + b"\xff\x00"
        return d

    assert "last page does not decode" in rejected(tmp_path, patched(fax, scramble), caplog)


# --- page format ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "value", "why"),
    [
        (256, 1686, "not 1728 wide"),  # ImageWidth (on the middle page)
        (256, 2048, "not 1728 wide"),
        (259, 1, "compression 1"),  # no compression
        (259, 5, "compression 5"),  # LZW
        (262, 1, "photometric 1"),  # min-is-black: older spandsp sends it inverted
        (258, 8, "of 8 bits"),
    ],
)
def test_wrong_page_format(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture, tag: int, value: int, why: str
) -> None:
    def patch(d: bytearray, dirs: list[Directory]) -> bytearray:
        entry = dirs[1].entries[tag]
        return put(d, entry.at + 8, "<H" if entry.kind == 3 else "<I", value)

    reason = rejected(tmp_path, patched(fax, patch), caplog)
    assert "page 2" in reason and why in reason


def test_wrong_width_made_by_pillow(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    narrow = tmp_path / "narrow.tif"
    Image.new("1", (1686, 2292), 1).save(narrow, compression="group4")
    assert "1686x2292" in rejected(tmp_path, narrow.read_bytes(), caplog, pages=1)


def test_absurd_entry_counts_are_bounded(
    tmp_path: Path, fax: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    data = patched(fax, lambda d, dirs: put(d, dirs[0].at, "<H", 0xFFFF))
    assert "implausible" in rejected(tmp_path, data, caplog)
    data = patched(fax, lambda d, dirs: put(d, dirs[0].entries[279].at + 4, "<I", 2**31))
    assert "strip values" in rejected(tmp_path, data, caplog)
