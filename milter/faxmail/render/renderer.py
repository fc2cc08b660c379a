"""Documents → one multi-page fax TIFF (G4, 1728 px wide): the steps and their limits.

Office files and text attachments are made PDFs first (office.py: LibreOffice, sandboxed, in
slots of its own), so that every limit below applies to what they convert to.
Images are vetted by their headers and made PDF pages (images.py), PDFs by their first bytes;
each is normalised by qpdf (pdfcheck.normalise_pdf: form appearances, /Rotate), then all are
rendered in one sandboxed Ghostscript run (ghostscript.py) while qpdf vets the
PDFs (pdfcheck.py: encrypted, damaged, page count) alongside; a refusal there stops gs.
Where one threshold a page serves (a cheap look at the images: pagelook.py), gs makes fax
bits itself with each page's own threshold; else it renders grey pages that binarise.py turns
into fax bits page by page from a pipe while gs renders the next (greystream.py). A slot
semaphore bounds the Ghostscript runs at a time; a fax that gets no slot in time is refused for
now.
Output goes to a temporary name and is renamed only after `validate_fax_tiff`: a killed gs
leaves partial files behind.
What it costs against bare Ghostscript is measured by bench/ (bench/README.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from faxmail.core.documents import Document
from faxmail.core.replies import (
    DOCUMENT_DAMAGED,
    LOCAL_ERROR,
    RENDERER_BUSY,
    TOO_MANY_PAGES,
    Refusal,
)
from faxmail.render import ghostscript
from faxmail.render.cover import FrontMatter, front_pages
from faxmail.render.frontpages import front_only, with_front
from faxmail.render.greystream import GreyStream, GreyStreamError
from faxmail.render.images import image_pages, image_pdf
from faxmail.render.office import OfficeConverter
from faxmail.render.options import PAGE_POINTS, RenderOptions
from faxmail.render.pagelook import cuts_text, page_cuts
from faxmail.render.pdfcheck import (
    check_pdf,
    may_have_images,
    normalise_pdf,
    require_pdf_header,
)
from faxmail.render.textpages import Geometry
from faxmail.render.tiffcheck import min_is_white, page_inks, validate_fax_tiff

log = logging.getLogger("faxmail.render")

FAX_NAME = "fax.tif"
GS_CHECK_TIMEOUT_S = 10.0  # a blank page takes ~50 ms
# A valid one-page blank A4 PDF (qpdf --check: no errors), to tell a broken gs from a bad file.
BLANK_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
    b"xref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n0000000052 00000 n \n"
    b"0000000101 00000 n \ntrailer<</Root 1 0 R/Size 4>>\nstartxref\n164\n%%EOF\n"
)


@dataclass(frozen=True)
class RenderedFax:
    tiff: Path
    pages: int
    seconds: float
    size: int
    front_pages: int = 0  # of `pages`: the cover sheet and the mail's text, drawn here


class _Shared:
    """What every Renderer of one daemon shares: the slots and the running gs processes."""

    def __init__(self, slots: int) -> None:
        self.slots = threading.BoundedSemaphore(slots)
        self.processes = ghostscript.Processes()
        self.office = OfficeConverter(slots)  # its own slots: a conversion holds no gs slot


class Renderer:
    def __init__(
        self,
        options: RenderOptions,
        slots: int | None = None,
        slot_wait_s: float = 5.0,
        *,
        shared: _Shared | None = None,
    ) -> None:
        count = slots if slots is not None else (os.cpu_count() or 1)
        if count < 1:
            raise ValueError("slots must be at least 1")
        self.options = options
        self.slot_wait_s = slot_wait_s
        self._shared = shared if shared is not None else _Shared(count)

    def with_options(self, options: RenderOptions) -> Renderer:
        """A renderer with other options that shares this one's slots and processes."""
        return Renderer(options, slot_wait_s=self.slot_wait_s, shared=self._shared)

    def render(
        self, documents: Sequence[Document], workdir: Path, front: FrontMatter | None = None
    ) -> RenderedFax:
        """The `front` pages (cover sheet, mail text: cover.py), then all documents in order,
        as one fax TIFF `workdir/fax.tif`; the page limit counts every page.

        Refusal: PDF_ENCRYPTED, DOCUMENT_DAMAGED, TOO_MANY_PAGES (over all documents),
        OFFICE_CONVERSION_FAILED, OFFICE_CONVERTER_BUSY (Office documents: office.py),
        RENDER_TOO_SLOW, RENDERER_BUSY (no slot within slot_wait_s), LOCAL_ERROR (bad output,
        daemon stopping). Only fax.tif is left in `workdir`; the documents are not touched.
        """
        front = front if front is not None and not front.empty else None
        if not documents and front is None:
            raise ValueError("nothing to render")
        if front is not None and front.surely_more_than(self.options.max_pages):
            pages = f"more than {self.options.max_pages}"
            raise Refusal(TOO_MANY_PAGES.format(pages=pages, limit=self.options.max_pages))
        started = time.monotonic()
        try:
            # Office files become PDFs first: the limits below apply to what they convert to.
            office = self._shared.office
            with office.as_pdfs(documents, workdir, self.options.office_timeout_s) as pdfs:
                if pdfs:
                    fax = self._render(pdfs, workdir, started, front)
                else:
                    fax = self._front_only(front or FrontMatter(), workdir, started)
        except Refusal as refusal:
            log.info("render refused after %.2f s: %s", time.monotonic() - started, refusal)
            raise
        log.info("rendered %d page(s) in %.2f s, %d bytes", fax.pages, fax.seconds, fax.size)
        return fax

    def stop_all(self) -> None:
        """Kill every running Ghostscript and LibreOffice process group; later renders fail
        with LOCAL_ERROR."""
        self._shared.processes.stop_all()
        self._shared.office.stop_all()

    # --- steps ---------------------------------------------------------------------------
    @property
    def _geometry(self) -> Geometry:
        return Geometry(self.options.paper, self.options.resolution)

    def _front_only(self, front: FrontMatter, workdir: Path, started: float) -> RenderedFax:
        """Text pages only: drawn here, no Ghostscript (and so no slot) needed."""
        final = workdir / FAX_NAME
        pages = front_only(front, self._geometry, self.options.max_pages, final)
        seconds, size = time.monotonic() - started, final.stat().st_size
        return RenderedFax(final, pages, seconds, size, front_pages=pages)

    def _render(
        self,
        documents: Sequence[Document],
        workdir: Path,
        started: float,
        front: FrontMatter | None = None,
    ) -> RenderedFax:
        options = self.options
        # the cover's page count changes its layout but not its length: counted once here
        extra = len(front_pages(front, self._geometry, 0)) if front is not None else 0
        # What needs no helper program runs before a slot is taken: a file that is not a PDF
        # never meets Ghostscript, and images are counted by their headers.
        for doc in documents:
            if doc.kind == "pdf":
                require_pdf_header(doc)
        counts = {
            n: image_pages(doc, options.max_pages)
            for n, doc in enumerate(documents)
            if doc.kind != "pdf"
        }
        _check_page_limit(sum(counts.values()) + extra, options.max_pages)
        if self._shared.processes.stopped:
            raise Refusal(LOCAL_ERROR)
        if not self._shared.slots.acquire(timeout=self.slot_wait_s):
            raise Refusal(RENDERER_BUSY)
        scratch = Path(tempfile.mkdtemp(prefix=".render-", dir=workdir))
        processes = self._shared.processes
        try:
            inputs = [self._input_pdf(doc, scratch, n) for n, doc in enumerate(documents, 1)]
            partial = scratch / "fax.tif.partial"
            # grey pages only where binarise.py has levels to find (scans, photos), and there
            # only if one threshold a page, from a cheap look (pagelook.py), is not enough
            looked = options.grey_pages and any(map(may_have_images, inputs))
            running, stream = (
                self._start_looking(inputs, partial, scratch)
                if looked
                else (ghostscript.start(options, inputs, partial, scratch, processes), None)
            )
            try:
                # qpdf vets the PDFs while gs renders them (a fax's fixed cost halves); a
                # refusal stops gs, and gs's time limit waits for the page count.
                for n, doc in enumerate(documents):
                    if doc.kind == "pdf":
                        counts[n] = check_pdf(doc, options.max_pages)
                total = sum(counts.values())
                _check_page_limit(total + extra, options.max_pages)
            except BaseException:
                ghostscript.abandon(running)
                _wait_quietly(stream)
                raise
            try:
                warned = ghostscript.finish(running, options, documents, total)
            except Refusal as refusal:
                # a failed reader stops gs (its pipe closes): then the fault is ours, not gs's
                _grey_inks(stream, gs_refused=True)
                if refusal.reply.code.startswith("5") and not self._ghostscript_works(scratch):
                    # gs fails on a blank page too: our fault, not the document's (retry later)
                    log.error("Ghostscript fails on a blank test page: %s", refusal.reply)
                    raise Refusal(LOCAL_ERROR) from None
                raise
            inks = _grey_inks(stream)
            if options.photo:
                partial = min_is_white(partial, scratch / "fax-white.tif.partial")
            if warned:
                pages = [counts[n] for n in range(len(documents))]
                _check_not_blank(documents, pages, inks or page_inks(partial), warned)
            added = with_front(front, self._geometry, partial, total) if front is not None else 0
            total += added
            validate_fax_tiff(partial, total)
            final = workdir / FAX_NAME
            os.replace(partial, final)
            seconds, size = time.monotonic() - started, final.stat().st_size
            return RenderedFax(final, total, seconds, size, front_pages=added)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            self._shared.slots.release()

    def _start_looking(
        self, inputs: Sequence[Path], partial: Path, scratch: Path
    ) -> tuple[ghostscript.Running, GreyStream | None]:
        """gs for documents with images: started at once on the fax device, its thresholds
        sent through a pipe once the look has them (its start and the look overlap); when one
        threshold a page is not enough, stopped and started again on the grey path."""
        options, processes = self.options, self._shared.processes
        reader, writer = os.pipe()
        try:
            running = ghostscript.start(options, inputs, partial, scratch, processes, cut_fd=reader)
        except BaseException:
            os.close(writer)
            raise
        finally:
            os.close(reader)
        try:
            cuts = page_cuts(inputs, scratch, options)
            if cuts is not None:
                # a few bytes a page: never a full pipe; a gs that ended already (it reads
                # them at its first page) is judged by finish(), from what it said
                with contextlib.suppress(BrokenPipeError):
                    os.write(writer, cuts_text(cuts))
                return running, None
        except BaseException:
            ghostscript.abandon(running)
            raise
        finally:
            os.close(writer)
        ghostscript.abandon(running)  # it waits for thresholds; the grey path paints instead
        partial.unlink(missing_ok=True)
        stream = GreyStream(partial, options.y_dpi)
        try:
            running = ghostscript.start(
                options, inputs, partial, scratch, processes, grey_fd=stream.write_fd
            )
        except BaseException:
            _wait_quietly(stream)
            raise
        stream.gs_started()  # binarised page by page while gs renders
        return running, stream

    def _ghostscript_works(self, scratch: Path) -> bool:
        """Render a blank one-page PDF with the same options: does gs itself work?

        Asked only after gs refused a document (a hang, a crash, an error): a hung or broken
        gs refuses every document, and its senders must get a 4xx and retry, not a bounce.
        """
        check = scratch / "gs-check"
        check.mkdir()
        blank = check / "blank.pdf"
        blank.write_bytes(BLANK_PDF)
        # Its own limit, not the admin's: a tight render limit must not make gs look broken.
        # (fax bits straight from gs: the check needs no binarisation step)
        options = replace(
            self.options, timeout_base_s=GS_CHECK_TIMEOUT_S, timeout_per_page_s=0, adaptive=False
        )
        try:
            ghostscript.run(
                options,
                [Document("pdf", blank, "blank test page")],
                [blank],
                check / "blank.tif",
                check,
                1,
                self._shared.processes,
            )
        except Refusal:
            return False
        return True

    def _input_pdf(self, doc: Document, scratch: Path, number: int) -> Path:
        """The PDF gs renders for `doc`: normalised (forms, /Rotate), images made pages first."""
        if doc.kind != "pdf":
            page_points = PAGE_POINTS[self.options.paper]
            made = image_pdf(doc, page_points, scratch / f"image-{number:02d}.pdf")
            doc = Document("pdf", made, doc.label)
        return normalise_pdf(doc, scratch / f"input-{number:02d}.pdf")


def _grey_inks(stream: GreyStream | None, gs_refused: bool = False) -> list[int] | None:
    """The ink of each binarised page, once gs has ended (None: fax bits came from gs).

    Refusal LOCAL_ERROR when binarising failed: a bug, no memory, no disk; a page cut off
    where gs was stopped is no fault of ours when gs was refused (`gs_refused`)."""
    if stream is None:
        return None
    try:
        return stream.wait()
    except GreyStreamError as error:
        if gs_refused:
            return None  # gs's refusal says why
        log.error("the grey pages of a finished Ghostscript run: %s", error)
        raise Refusal(LOCAL_ERROR) from None
    except Exception:
        log.exception("binarising the grey pages failed")
        raise Refusal(LOCAL_ERROR) from None


def _wait_quietly(stream: GreyStream | None) -> None:
    """After gs was stopped for a refusal: let the reader end; its cut-off page is moot."""
    if stream is not None:
        with contextlib.suppress(Exception):
            stream.wait()


def _check_page_limit(pages: int, limit: int) -> None:
    if pages > limit:
        raise Refusal(TOO_MANY_PAGES.format(pages=pages, limit=limit))


def _check_not_blank(
    documents: Sequence[Document], pages: list[int], inks: list[int], warned: dict[int, str]
) -> None:
    """A document gs warned about (and rendered anyway) must not come out blank: then gs drew
    nothing of it, and the warning was the reason (DOCUMENT_DAMAGED, naming it)."""
    first = 0
    for number, doc in enumerate(documents):
        last = first + pages[number]
        if number in warned and not any(inks[first:last]):
            raise Refusal(DOCUMENT_DAMAGED.format(name=doc.label, why=warned[number]))
        first = last
