"""The renderer with real Ghostscript, qpdf and libtiff: no mocks.

Every test document comes from tests/infra/pdfs.py, each made to show exactly one property.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageSequence

import faxmail.render.greystream as greystream
from faxmail.core.documents import Document, DocumentKind
from faxmail.core.replies import (
    DOCUMENT_DAMAGED,
    LOCAL_ERROR,
    PDF_ENCRYPTED,
    RENDER_TOO_SLOW,
    RENDERER_BUSY,
    TOO_MANY_PAGES,
    Refusal,
    Reply,
)
from faxmail.render.options import RenderOptions
from faxmail.render.pdfcheck import check_pdf
from faxmail.render.renderer import Renderer
from faxmail.render.tiffcheck import validate_fax_tiff
from infra.office_documents import grey_paper_scan_pdf
from infra.pdfs import (
    Page,
    black_png_bytes,
    build_pdf,
    garbage_stream_pdf,
    image_xobject,
    japanese_pdf,
    landscape_pdf,
    make_encrypted_pdf,
    make_jpeg,
    make_pdf,
    make_png,
    multipage_tiff_bytes,
    nested_forms_pdf,
    own_transfer_pdf,
    png_bomb_bytes,
    postscript_polyglot,
    postscript_xobject_pdf,
    scanned_page_image,
    scanned_pdf,
)

A4_FINE, A4_STANDARD, LETTER_FINE = 2292, 1146, 2156


def photo_pdf() -> bytes:
    """A page that is one photo-like image (a gradient over the page): binarise.py screens
    it, so it needs the grey path."""
    gradient = Image.linear_gradient("L").resize((620, 877))
    return build_pdf(
        [Page(b"q 595 0 0 842 0 0 cm /Im1 Do Q", (595, 842), {"Im1": image_xobject(gradient)})]
    )


MakeDoc = Callable[..., Document]


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """Where the documents lie (the caller's files; render must not touch them)."""
    path = tmp_path / "in"
    path.mkdir()
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def doc(inbox: Path) -> MakeDoc:
    """doc(kind, data) → a Document whose file holds data."""
    counter = iter(range(1, 1000))

    def make(kind: DocumentKind, data: bytes) -> Document:
        number = next(counter)
        path = inbox / f"part-{number:02d}.{kind}"
        path.write_bytes(data)
        return Document(kind, path, f"attachment {number} (file{number}.{kind})")

    return make


def pages_of(tiff: Path) -> list[Image.Image]:
    with Image.open(tiff) as image:
        return [frame.convert("L") for frame in ImageSequence.Iterator(image)]


def black_share(page: Image.Image) -> float:
    return page.histogram()[0] / (page.width * page.height)


def tiff_fields(tiff: Path) -> str:
    return subprocess.run(["tiffinfo", str(tiff)], capture_output=True, text=True).stdout


def gs_running(workdir: Path) -> list[str]:
    """Ghostscript processes working in this work dir (only ever ours): gs runs in a folder
    of the render's scratch dir. (Not pgrep -f on the command line: a grey render writes to a
    pipe, and its command line may name no file under the work dir.)"""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            argv = (process / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
            cwd = os.readlink(process / "cwd")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if Path(argv[0]).name == "gs" and cwd.startswith(f"{workdir}/"):
            found.append(" ".join(argv))
    return found


def refused(render: Callable[[], object]) -> Refusal:
    with pytest.raises(Refusal) as info:
        render()
    return info.value


# --- good documents ------------------------------------------------------------------


def test_one_page_pdf(doc: MakeDoc, workdir: Path) -> None:
    fax = Renderer(RenderOptions()).render([doc("pdf", make_pdf(1))], workdir)
    assert fax.tiff == workdir / "fax.tif"
    assert fax.pages == 1
    assert fax.size == fax.tiff.stat().st_size > 0
    assert fax.seconds > 0
    fields = tiff_fields(fax.tiff)
    assert "Compression Scheme: CCITT Group 4" in fields
    assert "min-is-white" in fields
    assert "Resolution: 204, 196" in fields
    (page,) = pages_of(fax.tiff)
    assert page.size == (1728, A4_FINE)
    assert 0.001 < black_share(page) < 0.2  # text, not blank, not a black page


def test_ten_pages_and_nothing_else_left(doc: MakeDoc, workdir: Path, inbox: Path) -> None:
    document = doc("pdf", make_pdf(10))
    fax = Renderer(RenderOptions()).render([document], workdir)
    assert fax.pages == 10
    assert [p.size for p in pages_of(fax.tiff)] == [(1728, A4_FINE)] * 10
    assert [p.name for p in workdir.iterdir()] == ["fax.tif"]
    assert document.path.exists()  # the caller's file is left alone


@pytest.mark.parametrize(
    ("paper", "resolution", "height", "y_dpi"),
    [
        ("a4", "fine", A4_FINE, 196),
        ("a4", "standard", A4_STANDARD, 98),
        ("letter", "fine", LETTER_FINE, 196),
        ("letter", "standard", 1078, 98),
    ],
)
@pytest.mark.parametrize("photo", [False, True])
def test_paper_and_resolution(
    doc: MakeDoc,
    workdir: Path,
    paper: str,
    resolution: str,
    height: int,
    y_dpi: int,
    photo: bool,
) -> None:
    options = RenderOptions(paper=paper, resolution=resolution, photo=photo)  # type: ignore[arg-type]
    fax = Renderer(options).render([doc("pdf", make_pdf(2))], workdir)
    assert [p.size for p in pages_of(fax.tiff)] == [(1728, height)] * 2
    fields = tiff_fields(fax.tiff)
    assert f"Resolution: 204, {y_dpi}" in fields
    assert fields.count("CCITT Group 4") == 2
    # tiffscaled writes min-is-black; the renderer relabels it (the validator insists)
    assert fields.count("min-is-white") == 2


@pytest.mark.parametrize("make", [make_pdf, own_transfer_pdf])
def test_photo_mode_is_black_on_white(
    doc: MakeDoc, tmp_path: Path, make: Callable[..., bytes]
) -> None:
    """Photo mode relabels tiffscaled's min-is-black output: still black text on white,
    also when the PDF sets its own transfer function."""
    document = doc("pdf", make(1) if make is make_pdf else make())
    plain = Renderer(RenderOptions()).render([document], _dir(tmp_path, "plain"))
    photo = Renderer(RenderOptions(photo=True)).render([document], _dir(tmp_path, "photo"))
    text_black = black_share(pages_of(plain.tiff)[0])
    photo_black = black_share(pages_of(photo.tiff)[0])
    assert 0.01 < text_black < 0.2
    assert 0.5 * text_black < photo_black < 2 * text_black
    assert "min-is-white" in tiff_fields(photo.tiff)


def test_landscape_page_is_rotated_onto_portrait_paper(doc: MakeDoc, workdir: Path) -> None:
    fax = Renderer(RenderOptions()).render([doc("pdf", landscape_pdf())], workdir)
    (page,) = pages_of(fax.tiff)
    assert page.size == (1728, A4_FINE)
    left, top, right, bottom = ImageChops.invert(page).getbbox() or (0, 0, 0, 0)
    # the table's rows run across the landscape page: on the fax they run down the page
    assert bottom - top > right - left > 0


def test_japanese_text_with_substituted_cid_font(doc: MakeDoc, workdir: Path) -> None:
    """Not embedded (like most Japanese office PDFs): gs substitutes IPA Mincho, quietly."""
    fax = Renderer(RenderOptions()).render([doc("pdf", japanese_pdf())], workdir)
    (page,) = pages_of(fax.tiff)
    top_band = page.crop((0, 0, 1728, 400))  # the Japanese line is near the top
    assert black_share(top_band) > 0.005


def test_whitening_turns_grey_paper_white(doc: MakeDoc, tmp_path: Path) -> None:
    scan = doc("pdf", scanned_pdf())
    plain = RenderOptions(whiten_threshold=None, blacken_threshold=None)
    grey = Renderer(plain).render([scan], _dir(tmp_path, "grey"))
    white = Renderer(RenderOptions(whiten_threshold=0.8)).render([scan], _dir(tmp_path, "white"))
    assert white.size * 5 < grey.size  # the paper no longer becomes a dot screen
    assert black_share(pages_of(white.tiff)[0]) < black_share(pages_of(grey.tiff)[0]) / 3
    assert black_share(pages_of(white.tiff)[0]) > 0.001  # the text is still there


def test_dark_grey_ink_becomes_black(doc: MakeDoc, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("L", (400, 300), 60).save(buffer, format="PNG")  # ink at 60/255 ≈ 0.24
    ink = doc("png", buffer.getvalue())
    plain = RenderOptions(whiten_threshold=None, blacken_threshold=None)
    screened = Renderer(plain).render([ink], _dir(tmp_path, "screen"))
    solid = Renderer(RenderOptions()).render([ink], _dir(tmp_path, "solid"))

    def share(tiff: Path) -> float:
        """Black share well inside the inked rectangle (the image is placed, not enlarged)."""
        page = pages_of(tiff)[0].convert("L")
        left, top, right, bottom = ImageChops.invert(page).getbbox() or (0, 0, 0, 0)
        return black_share(page.crop((left + 50, top + 50, right - 50, bottom - 50)))

    assert share(solid.tiff) > 0.99  # a solid stroke, not a dot screen
    assert share(screened.tiff) < 0.95


def test_whitening_leaves_pure_text_pixel_identical(doc: MakeDoc, tmp_path: Path) -> None:
    document = doc("pdf", make_pdf(2))
    plain = RenderOptions(whiten_threshold=None, blacken_threshold=None)
    off = Renderer(plain).render([document], _dir(tmp_path, "a"))
    on = Renderer(RenderOptions()).render([document], _dir(tmp_path, "b"))
    for a, b in zip(pages_of(off.tiff), pages_of(on.tiff), strict=True):
        assert ImageChops.difference(a, b).getbbox() is None


def test_png_and_jpeg_become_pages(doc: MakeDoc, workdir: Path) -> None:
    documents = [doc("png", make_png()), doc("jpeg", make_jpeg())]
    fax = Renderer(RenderOptions()).render(documents, workdir)
    assert fax.pages == 2
    assert [p.size for p in pages_of(fax.tiff)] == [(1728, A4_FINE)] * 2
    assert [p.name for p in workdir.iterdir()] == ["fax.tif"]


def test_rgba_png_renders(doc: MakeDoc, workdir: Path) -> None:
    fax = Renderer(RenderOptions()).render([doc("png", make_png(mode="RGBA"))], workdir)
    assert fax.pages == 1


def test_multipage_tiff_counts_its_pages(doc: MakeDoc, workdir: Path) -> None:
    fax = Renderer(RenderOptions()).render([doc("tiff", multipage_tiff_bytes(3))], workdir)
    assert fax.pages == 3
    assert len(pages_of(fax.tiff)) == 3


def test_documents_are_joined_in_order(doc: MakeDoc, tmp_path: Path) -> None:
    black = doc("png", black_png_bytes())
    text = doc("pdf", make_pdf(2))
    first = Renderer(RenderOptions()).render([black, text], _dir(tmp_path, "a"))
    assert [black_share(p) > 0.3 for p in pages_of(first.tiff)] == [True, False, False]
    second = Renderer(RenderOptions()).render([text, black], _dir(tmp_path, "b"))
    assert [black_share(p) > 0.3 for p in pages_of(second.tiff)] == [False, False, True]


def test_renderers_with_other_options_share_the_slots() -> None:
    base = Renderer(RenderOptions(), slots=1)
    other = base.with_options(RenderOptions(photo=True))
    assert other.options.photo and not base.options.photo
    assert other._shared is base._shared


# --- bad documents -------------------------------------------------------------------


def test_encrypted_pdf(doc: MakeDoc, workdir: Path) -> None:
    document = doc("pdf", make_encrypted_pdf(1))
    refusal = refused(lambda: Renderer(RenderOptions()).render([document], workdir))
    assert refusal.reply == PDF_ENCRYPTED
    assert list(workdir.iterdir()) == []


def test_owner_password_only_pdf_is_rendered(doc: MakeDoc, workdir: Path) -> None:
    """An empty user password opens without asking: not 'password-protected' for us."""
    restricted = make_encrypted_pdf(1, user_password="")
    fax = Renderer(RenderOptions()).render([doc("pdf", restricted)], workdir)
    assert fax.pages == 1


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_pdf(doc: MakeDoc, workdir: Path, keep: float) -> None:
    data = make_pdf(10)
    document = doc("pdf", data[: int(len(data) * keep)])
    refusal = refused(lambda: Renderer(RenderOptions()).render([document], workdir))
    assert _is(refusal, DOCUMENT_DAMAGED)
    assert document.label in str(refusal)
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    "data",
    [b"", b"Hello, this is a letter, not a PDF.\n" * 20, b"\x89PNG\r\n\x1a\n" + b"\0" * 50],
    ids=["empty", "text", "png-bytes"],
)
def test_not_a_pdf(doc: MakeDoc, workdir: Path, data: bytes) -> None:
    refusal = refused(lambda: Renderer(RenderOptions()).render([doc("pdf", data)], workdir))
    assert _is(refusal, DOCUMENT_DAMAGED)
    assert "not a PDF" in str(refusal)


def test_pdf_without_pages(doc: MakeDoc, workdir: Path) -> None:
    document = doc("pdf", build_pdf([]))
    refusal = refused(lambda: Renderer(RenderOptions()).render([document], workdir))
    assert _is(refusal, DOCUMENT_DAMAGED)
    assert "no pages" in str(refusal)


def test_garbage_inside_a_stream_is_caught_by_ghostscript(
    doc: MakeDoc, workdir: Path, tmp_path: Path
) -> None:
    document = doc("pdf", garbage_stream_pdf())
    assert check_pdf(document, 50) == 1  # the structure is fine: only gs sees the damage
    refusal = refused(lambda: Renderer(RenderOptions()).render([document], workdir))
    assert _is(refusal, DOCUMENT_DAMAGED)
    assert "Error" in refusal.reply.text  # gs's own first line
    assert str(tmp_path) not in str(refusal)  # no paths of ours in the reply
    assert list(workdir.iterdir()) == []


def test_damage_is_blamed_on_the_right_document(doc: MakeDoc, workdir: Path) -> None:
    good = doc("pdf", make_pdf(1))
    bad = doc("pdf", garbage_stream_pdf())
    refusal = refused(lambda: Renderer(RenderOptions()).render([good, bad], workdir))
    assert bad.label in str(refusal)
    assert good.label not in str(refusal)


def test_too_many_pages_in_one_pdf(doc: MakeDoc, workdir: Path) -> None:
    document = doc("pdf", make_pdf(10))
    refusal = refused(lambda: Renderer(RenderOptions(max_pages=5)).render([document], workdir))
    assert refusal.reply == TOO_MANY_PAGES.format(pages=10, limit=5)


def test_too_many_pages_over_all_documents(doc: MakeDoc, workdir: Path) -> None:
    documents = [doc("pdf", make_pdf(3)), doc("tiff", multipage_tiff_bytes(3))]
    refusal = refused(lambda: Renderer(RenderOptions(max_pages=5)).render(documents, workdir))
    assert refusal.reply == TOO_MANY_PAGES.format(pages=6, limit=5)


def test_too_many_pages_in_a_tiff(doc: MakeDoc, workdir: Path) -> None:
    document = doc("tiff", multipage_tiff_bytes(4))
    refusal = refused(lambda: Renderer(RenderOptions(max_pages=2)).render([document], workdir))
    assert _is(refusal, TOO_MANY_PAGES)


def test_png_decompression_bomb(doc: MakeDoc, workdir: Path) -> None:
    document = doc("png", png_bomb_bytes(60000, 60000))
    refusal = refused(lambda: Renderer(RenderOptions()).render([document], workdir))
    assert _is(refusal, DOCUMENT_DAMAGED)
    assert "pixels" in str(refusal)


def test_image_over_our_pixel_limit(doc: MakeDoc, workdir: Path) -> None:
    """Below Pillow's own bomb limits (89 M pixels warns, 179 M fails), above ours (50 M)."""
    document = doc("png", png_bomb_bytes(8000, 8000))
    refusal = refused(lambda: Renderer(RenderOptions()).render([document], workdir))
    assert _is(refusal, DOCUMENT_DAMAGED)
    assert "8000x8000" in str(refusal)


def test_image_of_the_wrong_kind(doc: MakeDoc, workdir: Path) -> None:
    document = doc("png", make_jpeg())
    refusal = refused(lambda: Renderer(RenderOptions()).render([document], workdir))
    assert _is(refusal, DOCUMENT_DAMAGED)


def test_broken_image(doc: MakeDoc, workdir: Path) -> None:
    document = doc("jpeg", make_jpeg()[:200])
    with pytest.raises(Refusal) as info:
        Renderer(RenderOptions()).render([document], workdir)
    assert _is(info.value, DOCUMENT_DAMAGED)


# --- file access from documents ------------------------------------------------------


def test_postscript_inside_pdf_cannot_touch_files(
    doc: MakeDoc, workdir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "pwned"
    document = doc("pdf", postscript_xobject_pdf(target))
    try:
        Renderer(RenderOptions()).render([document], workdir)
    except Refusal as refusal:
        assert _is(refusal, DOCUMENT_DAMAGED)  # gs warns about the PostScript XObject
    assert not target.exists()


def test_postscript_disguised_as_pdf_is_not_run(
    doc: MakeDoc, workdir: Path, tmp_path: Path
) -> None:
    """PostScript followed by a real PDF passes qpdf, but gs would run it as PostScript."""
    target = tmp_path / "pwned"
    document = doc("pdf", postscript_polyglot(target))
    refusal = refused(lambda: Renderer(RenderOptions()).render([document], workdir))
    assert _is(refusal, DOCUMENT_DAMAGED)
    assert not target.exists()


# --- time, slots, shutdown -----------------------------------------------------------


def test_endless_pdf_is_stopped(doc: MakeDoc, workdir: Path) -> None:
    document = doc("pdf", nested_forms_pdf())
    options = RenderOptions(timeout_base_s=1.0, timeout_per_page_s=0.5)
    refusal = refused(lambda: Renderer(options).render([document], workdir))
    assert _is(refusal, RENDER_TOO_SLOW)
    assert gs_running(workdir) == []
    assert list(workdir.iterdir()) == []


def fake_gs(folder: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put a `gs` running `script` (sh) first on PATH, for this test only."""
    folder.mkdir()
    program = folder / "gs"
    program.write_text("#!/bin/sh\n" + script + "\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


@pytest.mark.parametrize(
    "script",
    ["exec sleep 613", "echo 'Error: /undefined in --nostringval--'; exit 1", "kill -SEGV $$"],
    ids=["hangs", "fails", "crashes"],
)
def test_a_broken_ghostscript_is_our_fault_not_the_documents(
    doc: MakeDoc, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    # Every document would be refused for good (5xx) and bounced to its sender; the blank
    # test page that gs also fails on shows the fault is ours: 451, and the sender retries.
    document = doc("pdf", make_pdf(1))
    fake_gs(tmp_path / "bin", script, monkeypatch)
    monkeypatch.setattr("faxmail.render.renderer.GS_CHECK_TIMEOUT_S", 1.0)
    options = RenderOptions(timeout_base_s=1.0, timeout_per_page_s=0.0)
    refusal = refused(lambda: Renderer(options).render([document], workdir))
    assert _is(refusal, LOCAL_ERROR)
    assert subprocess.run(["pgrep", "-fx", "sleep 613"]).returncode == 1  # the hung one is gone
    assert list(workdir.iterdir()) == []


def test_many_pages_with_a_tiny_timeout(doc: MakeDoc, workdir: Path) -> None:
    document = doc("pdf", make_pdf(400))
    options = RenderOptions(max_pages=400, timeout_base_s=0.05, timeout_per_page_s=0.0001)
    refusal = refused(lambda: Renderer(options).render([document], workdir))
    assert _is(refusal, RENDER_TOO_SLOW)
    assert gs_running(workdir) == []
    assert list(workdir.iterdir()) == []


def test_busy_renderer_and_stop_all(doc: MakeDoc, tmp_path: Path) -> None:
    renderer = Renderer(RenderOptions(timeout_base_s=60.0), slots=1, slot_wait_s=0.2)
    endless = doc("pdf", nested_forms_pdf())
    first_dir = _dir(tmp_path, "first")
    outcome: list[Refusal] = []

    def first() -> None:
        try:
            renderer.render([endless], first_dir)
        except Refusal as error:
            outcome.append(error)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        _wait_for(lambda: bool(gs_running(first_dir)))
        # the only slot is taken: a second fax gets a temporary refusal
        quick = doc("pdf", make_pdf(1))
        refusal = refused(lambda: renderer.render([quick], _dir(tmp_path, "second")))
        assert refusal.reply == RENDERER_BUSY
        assert refusal.reply.temporary
    finally:
        renderer.stop_all()  # daemon shutdown: kills the running gs
        thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert outcome[0].reply == LOCAL_ERROR
    assert gs_running(first_dir) == []
    assert list(first_dir.iterdir()) == []
    # after stop_all nothing new starts
    refusal = refused(lambda: renderer.render([quick], _dir(tmp_path, "third")))
    assert refusal.reply == LOCAL_ERROR


def test_slots_are_released_after_refusals(doc: MakeDoc, tmp_path: Path) -> None:
    renderer = Renderer(RenderOptions(), slots=1, slot_wait_s=0.5)
    bad = doc("pdf", garbage_stream_pdf())
    for n in range(3):
        with pytest.raises(Refusal):
            renderer.render([bad], _dir(tmp_path, f"bad{n}"))
    fax = renderer.render([doc("pdf", make_pdf(1))], _dir(tmp_path, "good"))
    assert fax.pages == 1


# --- the TIFF validator --------------------------------------------------------------


def test_validator_rejects_truncated_and_miscounted_tiffs(
    doc: MakeDoc, workdir: Path, tmp_path: Path
) -> None:
    fax = Renderer(RenderOptions()).render([doc("pdf", make_pdf(5))], workdir)
    validate_fax_tiff(fax.tiff, 5)
    with pytest.raises(Refusal) as info:
        validate_fax_tiff(fax.tiff, 4)
    assert info.value.reply == LOCAL_ERROR
    data = fax.tiff.read_bytes()
    for keep in (0.6, 0.99):
        cut = tmp_path / f"cut-{keep}.tif"
        cut.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(Refusal):
            validate_fax_tiff(cut, 5)


def test_validator_rejects_a_wrong_width(tmp_path: Path) -> None:
    narrow = tmp_path / "narrow.tif"
    Image.new("1", (1686, 2292), 1).save(narrow, compression="group4")
    with pytest.raises(Refusal):
        validate_fax_tiff(narrow, 1)


# --- helpers -------------------------------------------------------------------------


def _is(refusal: Refusal, reply: Reply) -> bool:
    """Same reply constant, whatever its placeholders were filled with."""
    got = refusal.reply
    fixed_start = reply.text.split("{")[0]
    return (got.code, got.enhanced) == (reply.code, reply.enhanced) and got.text.startswith(
        fixed_start
    )


def _dir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir()
    return path


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_grey_pages_are_binarised_from_a_pipe_while_gs_renders(
    doc: MakeDoc, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a photo (one threshold cannot serve it: pagelook.py) takes the grey path; its pages
    # reach binarise.py through a pipe, the first while gs still renders the second, and no
    # grey page file is written
    seen: list[tuple[int, bool, bool]] = []
    original = greystream.pgm_pages

    def watched(stream: io.BufferedReader) -> object:
        for page in original(stream):
            seen.append((page.width, any(workdir.rglob("*.pgm")), bool(gs_running(workdir))))
            yield page

    monkeypatch.setattr(greystream, "pgm_pages", watched)
    fax = Renderer(RenderOptions()).render(
        [doc("pdf", photo_pdf()), doc("pdf", photo_pdf())], workdir
    )
    assert fax.pages == 2 and [width for width, _, _ in seen] == [1686, 1686]
    assert not any(files for _, files, _ in seen) and seen[0][2]  # gs was still at work
    validate_fax_tiff(fax.tiff, 2)
    assert list(workdir.iterdir()) == [fax.tiff]


def test_a_failed_binarisation_is_our_fault_and_stops_gs(
    doc: MakeDoc, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no disk for the fax TIFF (or a bug): 451, not a bounce for the sender's scan; the
    # reader's closed pipe stops gs instead of leaving it blocked on a full pipe
    def no_space(pages: object, output: Path, y_dpi: int) -> list[int]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("faxmail.render.greystream.write_fax_pages", no_space)
    document = doc("pdf", photo_pdf())
    refusal = refused(lambda: Renderer(RenderOptions()).render([document] * 3, workdir))
    assert _is(refusal, LOCAL_ERROR)
    assert gs_running(workdir) == []
    assert list(workdir.iterdir()) == []


# --- one threshold a page, from a cheap look (pagelook.py) ----------------------------------


def grey_pages_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the grey pages gs hands binarise.py (none: the 1-bit path with per-page cuts)."""
    read: list[int] = []
    original = greystream.pgm_pages

    def counted(stream: io.BufferedReader) -> object:
        for page in original(stream):
            read.append(page.width)
            yield page

    monkeypatch.setattr(greystream, "pgm_pages", counted)
    return read


def test_scans_are_cut_by_gs_as_binarise_would_cut_them(
    doc: MakeDoc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a scan on light paper, a scan on grey paper (mean 165) and a JPEG scan: each page one
    # threshold of its own, applied by gs's 1-bit path, no grey page painted
    jpeg = io.BytesIO()
    scanned_page_image(seed=5).save(jpeg, "JPEG", quality=85)
    scans = [
        doc("pdf", scanned_pdf()),
        doc("pdf", grey_paper_scan_pdf(165)),
        doc("jpeg", jpeg.getvalue()),
    ]
    read = grey_pages_read(monkeypatch)
    looked = Renderer(RenderOptions()).render(scans, _dir(tmp_path, "looked"))
    assert read == [] and looked.pages == 3
    monkeypatch.setattr("faxmail.render.renderer.page_cuts", lambda *args: None)
    grey = Renderer(RenderOptions()).render(scans, _dir(tmp_path, "grey"))
    assert len(read) == 3  # the same pages, painted grey and binarised in Python
    for ours, theirs in zip(pages_of(looked.tiff), pages_of(grey.tiff), strict=True):
        differ = ImageChops.difference(ours, theirs).histogram()[255] / (1728 * 2292)
        assert differ < 0.002  # the same cut, or one level off
        assert 0.005 < black_share(ours) < 0.1  # the letter, on white: no dot screen
    assert looked.size < 1.1 * grey.size


def test_one_page_that_needs_grey_makes_the_whole_fax_grey(
    doc: MakeDoc, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = grey_pages_read(monkeypatch)
    fax = Renderer(RenderOptions()).render(
        [doc("pdf", scanned_pdf()), doc("pdf", photo_pdf())], workdir
    )
    assert fax.pages == 2 and len(read) == 2


def test_what_the_look_cannot_read_is_painted_grey(
    doc: MakeDoc, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an image with a stamp of text over it: not "one image", so binarise.py decides
    body = image_xobject(scanned_page_image())
    stamped = b"q 595 0 0 842 0 0 cm /Im1 Do Q BT /F1 20 Tf 300 50 Td (PAID) Tj ET"
    read = grey_pages_read(monkeypatch)
    fax = Renderer(RenderOptions()).render(
        [doc("pdf", build_pdf([Page(stamped, (595, 842), {"Im1": body})]))], workdir
    )
    assert fax.pages == 1 and len(read) == 1
