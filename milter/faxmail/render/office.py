"""Office files → PDF with LibreOffice headless, one cold `soffice` per document.

render/officefile.py has already looked at each file (macros and password protection are
refused there); this module runs LibreOffice on it under the same discipline as Ghostscript:

- A cold process per document with a fresh private profile directory (removed after): nothing
  a hostile document does to LibreOffice's state can reach the next one. It costs about 1.5 s
  per document (bench/README.md, benchmark 8).
- Sandboxed (`sandbox_command`): its own process group killed whole on timeout and shutdown;
  prlimit CPU, address-space, file-size and core limits; `unshare --net` (no network: a linked
  image or OLE link cannot be fetched) and `--pid --kill-child` (when the run ends or the
  daemon dies, every process LibreOffice started dies with it); `--map-root-user` lets an
  unprivileged daemon make those namespaces. An empty environment, HOME in the scratch dir.
- The profile's macro security is set to "very high" with macro execution disabled, although
  no document with macros gets this far.
- Conversions take turns in `slots` (about 210 MiB each); a mail that gets no slot within
  `slot_wait_s` is answered OFFICE_CONVERTER_BUSY (4xx, the sender retries).
- LibreOffice's exit code says little: a file it cannot load exits 0 with no output. No PDF
  (or an "Error:" line) is judged like gs's refusals: a test conversion of a line of text tells
  a broken LibreOffice (451) from a document it cannot read (550).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from faxmail.core.documents import OFFICE_KINDS, Document
from faxmail.core.processes import exits_by, kill_group, limited_command, short_reason
from faxmail.core.replies import (
    LOCAL_ERROR,
    OFFICE_CONVERSION_FAILED,
    OFFICE_CONVERTER_BUSY,
    RENDER_TOO_SLOW,
    Refusal,
)
from faxmail.render.ghostscript import Processes

log = logging.getLogger("faxmail.render.office")

SOFFICE = "soffice"
TIMEOUT_S = 60.0  # a cold start is 1.5 s, the very first on a machine about 9 s (policy
# fax.office_timeout_s sets it per render); its CPU limit is twice that (two cores' worth)
CPU_S = 120  # at least
MEMORY_BYTES = 2 * 1024**3  # address space; a conversion's resident size is about 210 MiB
OUTPUT_BYTES = 256 * 1024**2  # no file LibreOffice writes grows larger (RLIMIT_FSIZE)
SLOT_WAIT_S = 30.0
OUTPUT_LIMIT = 16 * 1024  # of LibreOffice's messages, kept for the log and the reply
# The profile's registry: macros never run, whatever a document asks.
PROFILE_SETTINGS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry"
 xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="MacroSecurityLevel" oor:op="fuse"><value>3</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="DisableMacrosExecution" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop oor:name="BlockUntrustedRefererLinks" oor:op="fuse"><value>true</value></prop></item>
</oor:items>
"""  # noqa: E501
# Text attachments are UTF-8 by now (officefile.py): say so rather than let LibreOffice guess.
_TEXT_FILTER = "--infilter=Text (encoded):UTF8,LF,,,"
_HEALTH_TEXT = b"faxmail LibreOffice test page\n"


def sandbox_command(argv: list[str], cpu_s: int, memory_bytes: int, file_bytes: int) -> list[str]:
    """`argv` limited (core/processes.py) and in new network and pid namespaces."""
    unshare = ["unshare", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--"]
    return limited_command([*unshare, *argv], cpu_s, memory_bytes, file_bytes=file_bytes)


@dataclass(frozen=True)
class _Outcome:
    pdf: Path | None  # None: no PDF came out
    returncode: int | None  # None: timed out and killed
    messages: str


class OfficeConverter:
    """Converts the Office documents of a fax to PDFs; one per daemon, shared by its renderers."""

    def __init__(
        self, slots: int, slot_wait_s: float = SLOT_WAIT_S, timeout_s: float = TIMEOUT_S
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = threading.BoundedSemaphore(slots)
        self.slot_wait_s = slot_wait_s
        self.timeout_s = timeout_s
        self.processes = Processes()

    @contextmanager
    def as_pdfs(
        self, documents: Sequence[Document], workdir: Path, timeout_s: float | None = None
    ) -> Iterator[list[Document]]:
        """`documents` with each Office document replaced by its PDF (same label), valid inside
        the block; the PDFs live in a scratch dir under `workdir` that the block's end removes.
        `timeout_s`: a conversion's limit (default: the converter's).

        Refusal: OFFICE_CONVERSION_FAILED, RENDER_TOO_SLOW, OFFICE_CONVERTER_BUSY, LOCAL_ERROR.
        """
        if not any(doc.kind in OFFICE_KINDS for doc in documents):
            yield list(documents)
            return
        scratch = Path(tempfile.mkdtemp(prefix=".office-", dir=workdir))
        try:
            converted = [
                self.to_pdf(doc, scratch / f"{n:02d}", timeout_s)
                if doc.kind in OFFICE_KINDS
                else doc
                for n, doc in enumerate(documents, 1)
            ]
            yield converted
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def to_pdf(self, doc: Document, scratch: Path, timeout_s: float | None = None) -> Document:
        """One Office document as a PDF in `scratch` (a new directory)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self.processes.stopped:
            raise Refusal(LOCAL_ERROR)
        if not self.slots.acquire(timeout=self.slot_wait_s):
            log.warning("%s: no conversion slot within %g s", doc.label, self.slot_wait_s)
            raise Refusal(OFFICE_CONVERTER_BUSY)
        started = time.monotonic()
        try:
            outcome = self._convert(doc.path, doc.kind, scratch, timeout_s)
            if outcome.returncode is None:
                log.info("%s: LibreOffice killed after %g s", doc.label, timeout_s)
                why = f"{doc.label}: conversion took longer than {timeout_s:g} s"
                raise Refusal(RENDER_TOO_SLOW.format(why=why))
            if outcome.pdf is None:
                self._refuse(doc, outcome, scratch)
        finally:
            self.slots.release()
        assert outcome.pdf is not None
        log.info(
            "%s: converted (%s) to PDF in %.2f s, %d bytes",
            doc.label,
            doc.kind,
            time.monotonic() - started,
            outcome.pdf.stat().st_size,
        )
        return Document("pdf", outcome.pdf, doc.label)

    def stop_all(self) -> None:
        """Kill every running conversion; later ones fail with LOCAL_ERROR."""
        self.processes.stop_all()

    # --- steps ---------------------------------------------------------------------------
    def _refuse(self, doc: Document, outcome: _Outcome, scratch: Path) -> None:
        """No PDF: the document's fault (550) unless LibreOffice fails on a line of text too."""
        check = scratch.with_name(scratch.name + "-check")
        health = self._convert(None, "txt", check, self.timeout_s)
        if health.pdf is None:
            log.error(
                "LibreOffice fails on a test page (exit %s): %s",
                health.returncode,
                short_reason(health.messages, 300),
            )
            raise Refusal(LOCAL_ERROR)
        why = _reason(outcome)
        log.info("%s: LibreOffice refused it (exit %s): %s", doc.label, outcome.returncode, why)
        raise Refusal(OFFICE_CONVERSION_FAILED.format(name=doc.label, why=why))

    def _convert(self, source: Path | None, kind: str, scratch: Path, timeout_s: float) -> _Outcome:
        """Run one cold soffice on a copy of `source` (None: the health-check text)."""
        if shutil.which(SOFFICE) is None:
            raise FileNotFoundError(f"{SOFFICE} not found on PATH")
        scratch.mkdir()
        inputs, output, home = scratch / "in", scratch / "out", scratch / "home"
        for folder in (inputs, output, home):
            folder.mkdir()
        # A name of ours (LibreOffice also writes its lock file next to it, not in the job's
        # work dir); the extension picks the import filter for text.
        document = inputs / f"document.{kind}"
        if source is None:
            document.write_bytes(_HEALTH_TEXT)
        else:
            shutil.copyfile(source, document)
        profile = scratch / "profile"
        (profile / "user").mkdir(parents=True)
        (profile / "user" / "registrymodifications.xcu").write_text(PROFILE_SETTINGS)
        argv = [
            SOFFICE,
            "--headless",
            "--norestore",
            "--nologo",
            "--nolockcheck",
            f"-env:UserInstallation={profile.as_uri()}",
            *([_TEXT_FILTER] if kind == "txt" else []),
            "--convert-to",
            "pdf",
            "--outdir",
            str(output),
            str(document),
        ]
        messages = scratch / "messages"
        rc = self._run(argv, home, messages, timeout_s)
        with messages.open("rb") as handle:
            text = handle.read(OUTPUT_LIMIT).decode("utf-8", "replace")
        pdf = output / "document.pdf"
        usable = rc == 0 and pdf.is_file() and pdf.stat().st_size > 0 and "Error:" not in text
        return _Outcome(pdf if usable else None, rc, text)

    def _run(self, argv: list[str], home: Path, messages: Path, timeout_s: float) -> int | None:
        """The sandboxed run, its messages into `messages`; None if killed for taking too long."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "TMPDIR": str(home),
            "LC_ALL": "C.UTF-8",
        }
        with messages.open("wb") as log_file:
            proc = subprocess.Popen(
                sandbox_command(argv, max(CPU_S, int(2 * timeout_s)), MEMORY_BYTES, OUTPUT_BYTES),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=home,
                env=env,
                start_new_session=True,  # its own process group, killed as a whole
            )
        processes = self.processes
        with processes.lock:
            processes.running.add(proc)
            if processes.stopped:
                kill_group(proc)
        finished = False
        try:
            finished = exits_by(proc, time.monotonic() + timeout_s)  # else killed below
        finally:
            # (what LibreOffice started dies with its pid namespace, so the group is enough)
            with processes.lock:
                kill_group(proc)
                processes.running.discard(proc)
            rc = proc.wait()
        if processes.stopped:
            raise Refusal(LOCAL_ERROR)
        return rc if finished else None


def _reason(outcome: _Outcome) -> str:
    """The line LibreOffice gave for not converting, fit for a reply."""
    for line in outcome.messages.splitlines():
        if "Error" in line:
            return short_reason(line.replace("Error:", "").strip())
    if outcome.returncode not in (0, None):
        return f"LibreOffice stopped with exit code {outcome.returncode}"
    return "LibreOffice could not open it"
