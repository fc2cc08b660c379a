"""Documents → one multi-page fax TIFF (G4, 1728 px wide), with Ghostscript in a sandbox.

Facts this module is built on (shared/notes/conversion.md, re-measured here with gs 10.00):
- Ghostscript's exit code lies on bad input; its messages do not. It runs without -q and every
  line it prints is checked against what good files print (banner, "Processing pages",
  "Page N", font loading); anything else refuses the document with that line as the reason.
- It runs as a subprocess per fax (a crash or hang in libgs must not take the daemon down), in
  its own process group (killed as a whole on timeout and on shutdown), with an empty private
  TMPDIR (-dSAFER still allows file access under TMPDIR), CPU/memory limits, and a wall-clock
  timeout of base + per page * pages.
- Output goes to a temporary name and is renamed only after `validate_fax_tiff`: a killed gs
  leaves partial files behind.
Measured here (2 cores, whole render() incl. checks and validation): 1 text page 67 ms,
50 pages 0.30 s (about 5 ms per page); a 150 dpi scanned page about 15 ms more; photo mode
about 30 ms per page (50 pages 1.6 s). The notes give 0.21 s for a 300 dpi scanned page.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import img2pdf
from PIL import Image

from .documents import Document
from .pdfcheck import check_pdf, limited_command
from .replies import (
    DOCUMENT_DAMAGED,
    LOCAL_ERROR,
    RENDER_TOO_SLOW,
    RENDERER_BUSY,
    TOO_MANY_PAGES,
    Refusal,
)
from .tiffcheck import validate_fax_tiff

log = logging.getLogger("faxmail.render")

FAX_NAME = "fax.tif"
# Pixels per image frame. An A4 page scanned at 600 dpi has 35 M; Pillow's own bomb limit is
# 89 M (warning) / 179 M (error), and a PNG is decoded in-process by img2pdf.
IMAGE_PIXEL_LIMIT = 50_000_000
# Page heights in pixels at 196 / 98 lines per inch; the fax devices snap the width to 1728 by
# themselves, `tiffscaled` (photo mode) needs the whole size given.
_HEIGHTS = {("a4", "fine"): 2292, ("a4", "standard"): 1146, ("letter", "fine"): 2156,
            ("letter", "standard"): 1078}  # fmt: skip
_PAGE_POINTS = {"a4": (595.0, 842.0), "letter": (612.0, 792.0)}
TIFFCROP_TIMEOUT_S = 60.0
_LINE_LIMIT = 4096  # a longer line without a newline is cut and judged by its start

# Everything Ghostscript prints for a good file (gs 10, PDF interpreter, with fonts-ipafont).
_NORMAL_OUTPUT = re.compile(
    r"|".join(
        [
            r"GPL Ghostscript \d+\.\d+(\.\d+)? \(\d{4}-\d\d-\d\d\)",
            r"Copyright \(C\) \d{4} Artifex Software, Inc\.  All rights reserved\.",
            r"This software is supplied under the GNU AGPLv3 and comes with NO WARRANTY:",
            r"see the file COPYING for details\.",
            r"Processing pages \d+ through \d+\.",
            r"Page \d+",
            # a font the PDF names but does not embed, and the file gs substitutes
            r"Loading (font|CIDFont) .+ \(or substitute\) from /\S.*",
            r"Loading \S+ font from /\S.*\.\.\. [\d ]*done\.",
            r"Querying operating system for font files\.\.\.",
            r"",
        ]
    )
)
# "GPL Ghostscript 10.00.0: " alone on a line prefixes the message on the next line.
_MESSAGE_PREFIX = re.compile(r"GPL Ghostscript [\d.]+:\s*")
_ABSOLUTE_PATH = re.compile(r"(?<![\w/])/(?:[\w.+-]+/)+[\w.+-]*")


@dataclass(frozen=True)
class RenderOptions:
    paper: Literal["a4", "letter"] = "a4"
    resolution: Literal["fine", "standard"] = "fine"  # 204x196 / 204x98
    whiten_threshold: float | None = 0.8  # transfer turning light grey to white; None = off
    photo: bool = False  # error diffusion (tiffscaled) instead of the fax device's screen
    max_pages: int = 50
    timeout_base_s: float = 20.0
    timeout_per_page_s: float = 5.0
    cpu_limit_s: int = 300
    memory_limit_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        # Literal types are not checked at run time, and these values come from the admin's YAML
        if self.paper not in _PAGE_POINTS or self.resolution not in ("fine", "standard"):
            raise ValueError(f"unknown paper {self.paper!r} or resolution {self.resolution!r}")
        if self.whiten_threshold is not None and not 0.0 < self.whiten_threshold <= 1.0:
            raise ValueError("whiten_threshold must be in (0, 1] or None")
        if self.max_pages < 1 or self.cpu_limit_s < 1 or self.memory_limit_bytes < 1:
            raise ValueError("max_pages, cpu_limit_s and memory_limit_bytes must be positive")
        if self.timeout_base_s <= 0 or self.timeout_per_page_s < 0:
            raise ValueError("timeouts must be positive")


@dataclass(frozen=True)
class RenderedFax:
    tiff: Path
    pages: int
    seconds: float
    size: int


class _Shared:
    """What every Renderer of one daemon shares: the slots and the running gs processes."""

    def __init__(self, slots: int) -> None:
        self.slots = threading.BoundedSemaphore(slots)
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen[bytes]] = set()
        self.stopped = False


class Renderer:
    def __init__(
        self, options: RenderOptions, slots: int | None = None, slot_wait_s: float = 5.0
    ) -> None:
        count = slots if slots is not None else (os.cpu_count() or 1)
        if count < 1:
            raise ValueError("slots must be at least 1")
        self.options = options
        self.slot_wait_s = slot_wait_s
        self._shared = _Shared(count)

    def with_options(self, options: RenderOptions) -> Renderer:
        """A renderer with other options that shares this one's slots and processes."""
        other = Renderer.__new__(Renderer)
        other.options = options
        other.slot_wait_s = self.slot_wait_s
        other._shared = self._shared
        return other

    def render(self, documents: Sequence[Document], workdir: Path) -> RenderedFax:
        """All documents, in order, as one fax TIFF `workdir/fax.tif`.

        Refusal: PDF_ENCRYPTED, DOCUMENT_DAMAGED, TOO_MANY_PAGES (over all documents),
        RENDER_TOO_SLOW, RENDERER_BUSY (no slot within slot_wait_s), LOCAL_ERROR (bad output,
        daemon stopping). Only fax.tif is left in `workdir`; the documents are not touched.
        """
        if not documents:
            raise ValueError("nothing to render")
        started = time.monotonic()
        try:
            fax = self._render(documents, workdir, started)
        except Refusal as refusal:
            log.info("render refused after %.2f s: %s", time.monotonic() - started, refusal)
            raise
        log.info("rendered %d page(s) in %.2f s, %d bytes", fax.pages, fax.seconds, fax.size)
        return fax

    def stop_all(self) -> None:
        """Kill every running Ghostscript process group; later renders fail with LOCAL_ERROR."""
        with self._shared.lock:
            self._shared.stopped = True
            for proc in self._shared.running:
                _kill_group(proc)

    # --- steps ---------------------------------------------------------------------------
    def _render(self, documents: Sequence[Document], workdir: Path, started: float) -> RenderedFax:
        options = self.options
        # The cheap checks run before a slot is taken: a bad file is refused without waiting.
        counts = [self._count_pages(doc) for doc in documents]
        total = sum(counts)
        if total > options.max_pages:
            raise Refusal(TOO_MANY_PAGES.format(pages=total, limit=options.max_pages))
        if self._shared.stopped:
            raise Refusal(LOCAL_ERROR)
        if not self._shared.slots.acquire(timeout=self.slot_wait_s):
            raise Refusal(RENDERER_BUSY)
        scratch = Path(tempfile.mkdtemp(prefix=".render-", dir=workdir))
        try:
            inputs = [
                doc.path.absolute() if doc.kind == "pdf" else self._image_pdf(doc, scratch, n)
                for n, doc in enumerate(documents, 1)
            ]
            partial = scratch / "fax.tif.partial"
            self._ghostscript(documents, inputs, partial, scratch, total)
            if options.photo:
                partial = _min_is_white(partial, scratch / "fax-white.tif.partial")
            validate_fax_tiff(partial, total)
            final = workdir / FAX_NAME
            os.replace(partial, final)
            return RenderedFax(final, total, time.monotonic() - started, final.stat().st_size)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            self._shared.slots.release()

    def _count_pages(self, doc: Document) -> int:
        if doc.kind == "pdf":
            return check_pdf(doc, self.options.max_pages)
        return _image_pages(doc, self.options.max_pages)

    def _image_pdf(self, doc: Document, scratch: Path, number: int) -> Path:
        """An image as a PDF page of the fax's paper size, shrunk to fit, never enlarged.

        img2pdf in-process (ran fine inside a libmilter callback thread), with its internal PDF
        writer: left to itself it writes through pikepdf when that is installed, and pikepdf is
        what deadlocked a milter daemon. JPEG and G4 data are copied without decoding; PNG with
        alpha or interlacing is decoded, hence the pixel limit checked before.
        """
        width, height = _PAGE_POINTS[self.options.paper]
        layout = img2pdf.get_layout_fun(
            pagesize=(width, height), fit=img2pdf.FitMode.shrink, auto_orient=True
        )
        try:
            pdf = img2pdf.convert(
                str(doc.path),
                layout_fun=layout,
                rotation=img2pdf.Rotation.ifvalid,
                engine=img2pdf.Engine.internal,
            )
        except _IMAGE_ERRORS as error:
            why = f"the image cannot be converted ({_short(str(error)) or type(error).__name__})"
            raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None
        path = scratch / f"image-{number:02d}.pdf"
        path.write_bytes(pdf)
        return path

    def _ghostscript(
        self,
        documents: Sequence[Document],
        inputs: Sequence[Path],
        output: Path,
        scratch: Path,
        pages: int,
    ) -> None:
        options = self.options
        gs_tmp = scratch / "tmp"
        gs_tmp.mkdir()
        marker = f"@@faxmail-{secrets.token_hex(6)}"
        argv = self._gs_arguments(output) + _transfer_arguments(options)
        for number, path in enumerate(inputs):
            # a line before each file tells which document later messages are about
            argv += ["-c", f"({marker} {number}\\n) print flush", "-f", str(path)]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TMPDIR": str(gs_tmp),
            "HOME": str(gs_tmp),
            "LC_ALL": "C",
        }
        timeout = options.timeout_base_s + options.timeout_per_page_s * pages
        command = limited_command(argv, options.cpu_limit_s, options.memory_limit_bytes)
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=gs_tmp,
            env=env,
            start_new_session=True,  # its own process group, killed as a whole
        )
        with self._shared.lock:
            self._shared.running.add(proc)
            if self._shared.stopped:
                _kill_group(proc)
        try:
            outcome = _watch(proc, marker, time.monotonic() + timeout, self._shared.lock)
        finally:
            with self._shared.lock:
                _kill_group(proc)
                self._shared.running.discard(proc)
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if self._shared.stopped:
            raise Refusal(LOCAL_ERROR)
        _judge(outcome, proc.returncode, documents, timeout, pages)

    def _gs_arguments(self, output: Path) -> list[str]:
        options = self.options
        y_dpi = 196 if options.resolution == "fine" else 98
        argv = [
            "gs",
            "-dSAFER",
            "-dBATCH",
            "-dNOPAUSE",
            "-dPDFSTOPONERROR",
            # one page more than allowed, so a file gs counts differently still cannot run long
            f"-dLastPage={options.max_pages + 1}",
            "-dFIXEDMEDIA",
            "-dPDFFitPage",  # scale any page size to the paper, rotate landscape pages
            "-sstdout=%stderr",  # one stream: messages stay in order with our markers
            f"-r204x{y_dpi}",
            "-sOutputFile=" + str(output).replace("%", "%%"),
        ]
        if options.photo:
            height = _HEIGHTS[(options.paper, options.resolution)]
            # error diffusion; -dMaxStripSize=0: one strip per page (4-row strips grow G4 1.7 times)
            argv += [
                "-sDEVICE=tiffscaled",
                "-sCompression=g4",
                "-dMaxStripSize=0",
                "-dDownScaleFactor=1",
                f"-g1728x{height}",
            ]
        else:
            # the fax device snaps A4 and Letter to 1728 px by itself
            argv += ["-sDEVICE=tiffg4", f"-sPAPERSIZE={options.paper}"]
        return argv


@dataclass
class _Outcome:
    timed_out: bool = False
    problem: str | None = None  # the first line a good file would not print
    document: int = 0  # index of the document gs was working on


def _watch(
    proc: subprocess.Popen[bytes], marker: str, deadline: float, lock: threading.Lock
) -> _Outcome:
    """Read gs's output until it ends, the deadline passes or a line shows trouble.

    gs is reaped only under `lock`, so stop_all() never signals a process group id that a
    reaped gs may have freed for reuse.
    """
    assert proc.stdout is not None
    outcome = _Outcome()
    fd = proc.stdout.fileno()
    pending = b""
    prefix_seen = False  # "GPL Ghostscript 10.00.0:" alone: the message follows
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome.timed_out = True
                return outcome
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            if len(pending) > _LINE_LIMIT:
                lines.append(pending)
                pending = b""
            for raw in lines:
                text = raw[:_LINE_LIMIT].decode("utf-8", "replace").rstrip("\r").strip()
                if text.startswith(marker):
                    outcome.document = _int(text[len(marker) :], outcome.document)
                elif _NORMAL_OUTPUT.fullmatch(text):
                    continue
                elif _MESSAGE_PREFIX.fullmatch(text):
                    prefix_seen = True
                else:
                    outcome.problem = _MESSAGE_PREFIX.sub("", text)
                    return outcome
    if pending.strip():
        outcome.problem = pending[:_LINE_LIMIT].decode("utf-8", "replace").strip()
    elif prefix_seen:
        outcome.problem = "Ghostscript reported an error"
    while time.monotonic() < deadline:
        with lock:
            if proc.poll() is not None:
                return outcome
        time.sleep(0.005)  # output closed: gs is writing its last page and exiting
    outcome.timed_out = True
    return outcome


def _judge(
    outcome: _Outcome, rc: int, documents: Sequence[Document], timeout: float, pages: int
) -> None:
    label = documents[min(outcome.document, len(documents) - 1)].label
    if outcome.timed_out:
        why = f"more than {timeout:g} s for {pages} page(s)"
        raise Refusal(RENDER_TOO_SLOW.format(why=why))
    if outcome.problem is not None:
        why = _short(outcome.problem) or "the renderer reported an error"
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why))
    if rc in (-signal.SIGXCPU, -signal.SIGKILL):
        raise Refusal(RENDER_TOO_SLOW.format(why="it needs more CPU time than allowed"))
    if rc != 0:
        why = f"the renderer failed (exit {rc})" if rc > 0 else f"the renderer crashed ({-rc})"
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why))


def _transfer_arguments(options: RenderOptions) -> list[str]:
    """PostScript run before the documents: the transfer function, if any.

    Whitening maps every grey at or above the threshold to white and stretches the rest, so grey
    paper does not become a dot screen (measured: 532 to 61 KiB per scanned page, and
    pixel-identical output on pure text). It persists across pages and files of one run.
    """
    if options.whiten_threshold is None:
        return []
    t = f"{options.whiten_threshold:.4f}"
    return ["-c", f"{{dup {t} ge {{pop 1}} {{{t} div}} ifelse}} settransfer", "-f"]


def _image_pages(doc: Document, max_pages: int) -> int:
    """Frames of an image, reading headers only; refuses decompression bombs before decoding."""
    formats = {"png": ("PNG",), "jpeg": ("JPEG", "MPO"), "tiff": ("TIFF",)}[doc.kind]
    try:
        with Image.open(doc.path) as image:
            if image.format not in formats:
                why = f"it is not a {doc.kind.upper()} image"
                raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why))
            if doc.kind != "tiff":
                _check_pixels(doc, image.size)
                return 1  # an MPO's further frames are previews; img2pdf takes the first
            frames = 0
            while True:
                frames += 1
                _check_pixels(doc, image.size)
                if frames > max_pages:
                    pages = f"more than {max_pages}"
                    raise Refusal(TOO_MANY_PAGES.format(pages=pages, limit=max_pages))
                try:
                    image.seek(frames)
                except EOFError:
                    return frames
    except Image.DecompressionBombError:
        why = f"the image has more than {IMAGE_PIXEL_LIMIT} pixels"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None
    except _IMAGE_ERRORS as error:
        why = f"the image cannot be read ({_short(str(error)) or type(error).__name__})"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why)) from None


def _check_pixels(doc: Document, size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1 or width * height > IMAGE_PIXEL_LIMIT:
        why = f"the image is {width}x{height} pixels (at most {IMAGE_PIXEL_LIMIT} allowed)"
        raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=why))


_IMAGE_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # includes PIL.UnidentifiedImageError
    ValueError,
    SyntaxError,  # Pillow's parsers raise it for bad headers
    EOFError,
    struct.error,
    Image.DecompressionBombError,
    img2pdf.ImageOpenError,
    img2pdf.AlphaChannelError,
    img2pdf.ExifOrientationError,
    img2pdf.JpegColorspaceError,
    img2pdf.NegativeDimensionError,
    img2pdf.PdfTooLargeError,
    img2pdf.UnsupportedColorspaceError,
)


def _min_is_white(source: Path, target: Path) -> Path:
    """`tiffscaled` writes min-is-black pages, which older spandsp sends inverted.

    `tiffcrop -I both` inverts the data and the Photometric tag together: the same picture,
    labelled min-is-white, still one G4 strip per page (measured: pixel-identical, about 5 ms
    per page). Inverting with the transfer function instead would be undone by a PDF that sets
    its own (/TR in an ExtGState): the page came out all white.
    """
    try:
        result = subprocess.run(
            ["tiffcrop", "-I", "both", str(source), str(target)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIFFCROP_TIMEOUT_S,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        log.warning("tiffcrop took more than %g s", TIFFCROP_TIMEOUT_S)
        raise Refusal(LOCAL_ERROR) from None
    errors = result.stderr.decode("utf-8", "replace").strip()
    if result.returncode != 0 or errors:
        log.warning("tiffcrop failed (exit %d): %s", result.returncode, errors[:300])
        raise Refusal(LOCAL_ERROR)
    return target


def _short(text: str, limit: int = 120) -> str:
    """One line of gs or library output, fit for a reply: no paths, bounded."""
    text = _ABSOLUTE_PATH.sub("<file>", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int(text: str, default: int) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return default


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process group that has not been reaped yet (its id cannot be reused)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
