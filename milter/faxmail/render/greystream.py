"""Grey pages from Ghostscript through a pipe, made fax bits while gs renders the next page.

gs (`-sDEVICE=pgmraw -sOutputFile=/dev/fd/N`, ghostscript.py) writes one binary PGM image per
page into a pipe, one after the other; a thread reads each page as soon as it is complete and
binarise.py appends it to the fax TIFF at once. Why a pipe and not a grey file per page:
binarising page k runs on another core while gs renders page k + 1 (only the last page's
binarisation is left after gs), no 4 MB file per page is written to disk and read back, and
one grey page at a time is in memory however long the fax.

The pipe's write end belongs to gs alone once it has started (`gs_started`), so gs's exit, or
its kill, is the reader's end of file: `wait` then always returns. When the reader fails (our
fault, not the document's), it closes its end, so gs stops at its next write instead of
waiting on a full pipe; the renderer asks `wait` before it judges gs's outcome.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from faxmail.render.binarise import write_fax_pages

log = logging.getLogger("faxmail.render")

PIPE_BYTES = 1 << 20  # a quarter of a page in flight: gs seldom waits for the reader
MAX_SIDE = 8192  # px: our pages are at most 1734 x 2292; anything else is not gs's page
JOIN_TIMEOUT_S = 60.0  # gs is gone when wait() is called: the last page, then end of file
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python 3.10+ names it; typeshed may not)
_HEADER_LIMIT = 1024  # bytes: a PGM header of gs's is about 60


class GreyStreamError(Exception):
    """The grey stream was not a sequence of whole 8-bit PGM pages."""


class GreyStream:
    """One render's pipe and the thread that turns its pages into `output`."""

    def __init__(self, output: Path, y_dpi: int) -> None:
        read_fd, self.write_fd = os.pipe()  # both close-on-exec: no other child inherits them
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: the default
            fcntl.fcntl(self.write_fd, _F_SETPIPE_SZ, PIPE_BYTES)
        self._reader = os.fdopen(read_fd, "rb", buffering=PIPE_BYTES)
        self._output = output
        self._y_dpi = y_dpi
        self._inks: list[int] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="faxmail-binarise", daemon=True)

    def gs_started(self) -> None:
        """gs holds the write end now (or never will): close ours and start reading."""
        self._close_write_end()
        self._thread.start()

    def wait(self) -> list[int]:
        """The ink pixels of each page written (0: a blank page), once the stream has ended.

        Raises GreyStreamError (a cut-off page: gs was stopped) or what the reader failed with."""
        self._close_write_end()
        if self._thread.ident is None:
            self._thread.start()  # gs never started: end of file at once
        self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            raise GreyStreamError(f"no end of the grey pages after {JOIN_TIMEOUT_S:g} s")
        if self._error is not None:
            raise self._error
        if self._inks is None:
            raise GreyStreamError("the grey page reader stopped")
        return self._inks

    def _close_write_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def _run(self) -> None:
        try:
            inks = write_fax_pages(pgm_pages(self._reader), self._output, self._y_dpi)
            if not inks:
                raise GreyStreamError("no grey page")  # gs stopped (or a bug): not a fax
            self._inks = inks
        except Exception as error:  # noqa: BLE001 - handed to wait(), raised in the renderer
            self._error = error
        finally:
            self._reader.close()


def pgm_pages(stream: BinaryIO) -> Iterator[Image.Image]:
    """Each 8-bit binary PGM image ("P5", maxval 255) of `stream`, until its end."""
    while True:
        first = stream.read(2)
        if not first:
            return
        if first != b"P5":
            raise GreyStreamError(f"not a binary PGM page: {first!r}")
        width, height, maxval = _header_numbers(stream)
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or maxval != 255:
            raise GreyStreamError(f"unexpected grey page {width} x {height}, maxval {maxval}")
        data = stream.read(width * height)
        if len(data) != width * height:
            raise GreyStreamError(f"grey page cut off after {len(data)} bytes")
        # the page shares `data` (no copy); binarise.py only reads it
        yield Image.frombuffer("L", (width, height), data, "raw", "L", 0, 1)


def _header_numbers(stream: BinaryIO) -> tuple[int, int, int]:
    """Width, height and maxval after "P5": whitespace and # comments between them, exactly
    one whitespace byte after the last (the pixels follow)."""
    numbers: list[int] = []
    digits = b""
    seen = 0
    while len(numbers) < 3:
        byte = stream.read(1)
        seen += 1
        if not byte or seen > _HEADER_LIMIT:
            raise GreyStreamError("grey page header cut off or too long")
        if byte.isdigit():
            digits += byte
            continue
        if digits:
            numbers.append(int(digits))
            digits = b""
        if byte == b"#":
            while byte not in (b"\n", b""):
                byte = stream.read(1)
                seen += 1
        elif not byte.isspace():
            raise GreyStreamError(f"unexpected byte {byte!r} in a grey page header")
    return numbers[0], numbers[1], numbers[2]
