"""Ghostscript in a sandbox: PDFs → one fax TIFF, or a refusal that says why.

Facts this module is built on (measured with gs 10.00; tests/test_render.py and
tests/test_hostile.py hold them):
- Ghostscript's exit code lies on bad input; its messages do not. It runs without -q and every
  line it prints is checked against what good files print (banner, "Processing pages",
  "Page N", font loading); anything else refuses the document with that line as the reason,
  except the few warnings about how a valid file's content is written (TOLERATED_WARNINGS).
- It runs as a subprocess per fax (a crash or hang in libgs must not take the daemon down), in
  its own process group (killed as a whole on timeout and on shutdown), with an empty private
  TMPDIR (-dSAFER still allows file access under TMPDIR), CPU/memory limits, and a wall-clock
  timeout of base + per page * pages.
"""

from __future__ import annotations

import os
import secrets
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from faxmail.core.documents import Document
from faxmail.core.processes import exits_by, kill_group, limited_command, short_reason
from faxmail.core.replies import DOCUMENT_DAMAGED, LOCAL_ERROR, RENDER_TOO_SLOW, Refusal
from faxmail.render.binarise import INK_SHARE
from faxmail.render.gsoutput import (
    MESSAGE_PREFIX,
    NORMAL_OUTPUT,
    SUMMARY,
    SUMMARY_NOTICE,
    TOLERATED_WARNINGS,
)
from faxmail.render.options import RenderOptions
from faxmail.render.pagelook import piped_transfer

# Page heights in pixels at 196 / 98 lines per inch; the fax devices snap the width to 1728 by
# themselves, `tiffscaled` (photo mode) needs the whole size given.
_HEIGHTS = {("a4", "fine"): 2292, ("a4", "standard"): 1146, ("letter", "fine"): 2156,
            ("letter", "standard"): 1078}  # fmt: skip
_LINE_LIMIT = 4096  # a longer line without a newline is cut and judged by its start


class Processes:
    """The running gs processes of one daemon, so that shutdown can kill them all.

    gs is reaped only under `lock`, so stop_all() never signals a process group id that a
    reaped gs may have freed for reuse.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen[bytes]] = set()
        self.stopped = False

    def stop_all(self) -> None:
        with self.lock:
            self.stopped = True
            for proc in self.running:
                kill_group(proc)


@dataclass
class Running:
    """A Ghostscript run that has started: `finish` watches it, `abandon` stops it."""

    proc: subprocess.Popen[bytes]
    marker: str
    started: float
    processes: Processes


def run(
    options: RenderOptions,
    documents: Sequence[Document],
    inputs: Sequence[Path],
    output: Path,
    scratch: Path,
    pages: int,
    processes: Processes,
) -> None:
    """`inputs` (PDFs, one per document) as one TIFF `output`; `scratch` is ours to use.

    Refusal: DOCUMENT_DAMAGED (naming the document gs was reading), RENDER_TOO_SLOW,
    LOCAL_ERROR (stopped by `processes.stop_all`). A refused run may leave a partial `output`.
    """
    finish(start(options, inputs, output, scratch, processes), options, documents, pages)


def start(
    options: RenderOptions,
    inputs: Sequence[Path],
    output: Path,
    scratch: Path,
    processes: Processes,
    grey_fd: int | None = None,
    cut_fd: int | None = None,
) -> Running:
    """Start rendering; the page count (and so the time limit) may be known only later.

    grey_fd: instead of `output`, grey pages into this pipe (greystream.py reads them).
    cut_fd: fax bits with each page's own threshold (pagelook.py), not grey pages, the
    thresholds read from this pipe as they come (pagelook.cuts_text)."""
    started = time.monotonic()
    gs_tmp = scratch / "tmp"
    gs_tmp.mkdir(exist_ok=True)  # a run started again on the grey path uses it too
    marker = f"@@faxmail-{secrets.token_hex(6)}"
    grey = grey_fd is not None
    target = f"/dev/fd/{grey_fd}" if grey else str(output).replace("%", "%%")
    if cut_fd is not None:
        transfer = piped_transfer(cut_fd, options.max_pages)
    else:
        transfer = _transfer_arguments(options, grey)
    argv = _gs_arguments(options, target, grey) + transfer
    for number, path in enumerate(inputs):
        # a line before each file tells which document later messages are about
        argv += ["-c", f"({marker} {number}\\n) print flush", "-f", str(path)]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TMPDIR": str(gs_tmp),
        "HOME": str(gs_tmp),
        "LC_ALL": "C",
    }
    command = limited_command(argv, options.cpu_limit_s, options.memory_limit_bytes)
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=gs_tmp,
        env=env,
        start_new_session=True,  # its own process group, killed as a whole
        pass_fds=tuple(fd for fd in (grey_fd, cut_fd) if fd is not None),
    )
    with processes.lock:
        processes.running.add(proc)
        if processes.stopped:
            kill_group(proc)
    return Running(proc, marker, started, processes)


def finish(
    running: Running, options: RenderOptions, documents: Sequence[Document], pages: int
) -> dict[int, str]:
    """Watch the run to its end, `pages` setting its time limit (counted from its start).

    Returns the documents (by index) for which gs gave a tolerated warning, and the warning:
    the caller checks that their pages are not blank.
    """
    timeout = options.timeout_base_s + options.timeout_per_page_s * pages
    processes = running.processes
    try:
        outcome = _watch(running.proc, running.marker, running.started + timeout)
    finally:
        abandon(running)
    if processes.stopped:
        raise Refusal(LOCAL_ERROR)
    _judge(outcome, running.proc.returncode, documents, timeout, pages)
    return outcome.tolerated


def abandon(running: Running) -> None:
    """Kill the run's process group (if still there) and reap it."""
    proc, processes = running.proc, running.processes
    with processes.lock:
        kill_group(proc)
        processes.running.discard(proc)
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


def _gs_arguments(options: RenderOptions, target: str, grey: bool) -> list[str]:
    """`target`: gs's OutputFile, its % already doubled."""
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
        f"-r204x{options.y_dpi}",
    ]
    argv.append("-sOutputFile=" + target)
    if grey:
        # one stream of grey pages (a PGM image each) into a pipe, binarised by binarise.py
        return [*argv, "-sDEVICE=pgmraw", f"-sPAPERSIZE={options.paper}"]
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


def _transfer_arguments(options: RenderOptions, grey: bool) -> list[str]:
    """PostScript run before the documents: the transfer function, if any.

    Adaptive (options.grey_pages) without images: vector pages have white paper and their
    darkest ink is black, so binarise.py's rule is one threshold, 1 - INK_SHARE: 60 % grey
    text, black at 50 % opacity, 50 % rules become solid, a 75 % grey cell white (grey=True:
    none here, binarise.py finds each page's levels).

    Whitening maps every grey at or above its threshold to white, blackening every grey at or
    below its threshold to black, and the greys between are stretched: grey paper does not
    become a dot screen (measured: 532 to 61 KiB per scanned page, pixel-identical output on
    pure text), nor does dark grey ink inside every stroke (OCR of such a scan: 49.7 to 96.6 %).
    It persists across pages and files of one run.
    """
    if grey:
        return []
    if options.grey_pages:
        cut = f"{1 - INK_SHARE:.4f}"
        return ["-c", f"{{{cut} gt {{1}} {{0}} ifelse}} settransfer", "-f"]
    white, black = options.whiten_threshold, options.blacken_threshold
    if white is None and black is None:
        return []
    w, b = f"{white if white is not None else 1.0:.4f}", f"{black or 0.0:.4f}"
    stretch = f"{{dup {b} le {{pop 0}} {{{b} sub {w} {b} sub div}} ifelse}}"
    return ["-c", f"{{dup {w} ge {{pop 1}} {stretch} ifelse}} settransfer", "-f"]


@dataclass
class _Outcome:
    timed_out: bool = False
    problem: str | None = None  # the first line a good file would not print
    document: int = 0  # index of the document gs was working on
    # document index → the first warning tolerated for it (TOLERATED_WARNINGS)
    tolerated: dict[int, str] = field(default_factory=dict)


def _watch(proc: subprocess.Popen[bytes], marker: str, deadline: float) -> _Outcome:
    """Read gs's output until it ends, the deadline passes or a line shows trouble; then
    wait for gs to exit, without reaping it (that is done under Processes.lock)."""
    assert proc.stdout is not None
    outcome = _Outcome()
    fd = proc.stdout.fileno()
    pending = b""
    prefix_seen = False  # "GPL Ghostscript 10.00.0:" alone: the message follows
    in_summary = False  # inside gs's closing list of warnings for the current file
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
                    in_summary = False
                elif text == SUMMARY and TOLERATED_WARNINGS:
                    in_summary = True
                elif in_summary and text in TOLERATED_WARNINGS:
                    outcome.tolerated.setdefault(outcome.document, text)
                elif in_summary and SUMMARY_NOTICE.fullmatch(text):
                    continue
                elif in_summary and text:
                    outcome.problem = SUMMARY  # as before: the summary's first line says it
                    return outcome
                elif NORMAL_OUTPUT.fullmatch(text):
                    continue
                elif MESSAGE_PREFIX.fullmatch(text):
                    prefix_seen = True
                else:
                    outcome.problem = MESSAGE_PREFIX.sub("", text)
                    return outcome
    if pending.strip():
        outcome.problem = pending[:_LINE_LIMIT].decode("utf-8", "replace").strip()
    elif prefix_seen:
        outcome.problem = "Ghostscript reported an error"
    # Output closed: gs is writing its last page and exiting.
    outcome.timed_out = not exits_by(proc, deadline)
    return outcome


def _judge(
    outcome: _Outcome, rc: int, documents: Sequence[Document], timeout: float, pages: int
) -> None:
    label = documents[min(outcome.document, len(documents) - 1)].label
    if outcome.timed_out:
        why = f"more than {timeout:g} s for {pages} page(s)"
        raise Refusal(RENDER_TOO_SLOW.format(why=why))
    if outcome.problem is not None:
        why = short_reason(outcome.problem) or "the renderer reported an error"
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why))
    if rc in (-signal.SIGXCPU, -signal.SIGKILL):
        raise Refusal(RENDER_TOO_SLOW.format(why="it needs more CPU time than allowed"))
    if rc != 0:
        why = f"the renderer failed (exit {rc})" if rc > 0 else f"the renderer crashed ({-rc})"
        raise Refusal(DOCUMENT_DAMAGED.format(name=label, why=why))


def _int(text: str, default: int) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return default
