"""8. Office files: LibreOffice's conversion time per DOCX page, and non-fax mail meanwhile.

(a) The daemon's converter (render/office.py: one cold soffice per document, a fresh profile,
the sandbox of unshare + prlimit) on DOCX files of 1, 5 and 20 pages, against the bare
`soffice --headless --convert-to pdf` with a fresh profile and no sandbox, interleaved round by
round. Per page: the slope between the 1- and the 20-page document.
(b) smtp-source of the 2 KB signed non-fax mail through Postfix + faxmail-milter, alone and
while two senders keep mailing 5-page DOCX faxes one after another (each a LibreOffice
conversion in the milter): the ratio of the two rates per round. Non-fax mail is answered at
DATA; what it can lose is CPU, not a lock.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from faxmail.core.documents import Document
from faxmail.render.office import OfficeConverter
from infra import officefiles as of
from infra.mail import Attachment, build_message

from .b1_throughput import _smtp_source
from .common import Row, Section, interleaved, ratio_row, timed_run
from .config import Config
from .lab import Lab
from .mails import AUTHOR, FAX, Timed, plain_mail, send_timed

PAGES = (1, 5, 20)
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def letter(pages: int) -> bytes:
    """A DOCX of `pages` pages of Japanese and English business text."""
    text = ["請求書の送付について", "Invoice 2026-1138, 24.95 EUR", "よろしくお願いいたします"]
    return of.docx([[f"{n + 1:02d} {line}" for line in text * 6] for n in range(pages)])


def bare_soffice(source: Path) -> float:
    """Seconds for the plain command (fresh profile, no sandbox, no limits)."""
    work = Path(tempfile.mkdtemp(prefix="bench-soffice-"))
    try:
        return timed_run(
            ["soffice", "--headless", "--norestore", f"-env:UserInstallation={work.as_uri()}/p",
             "--convert-to", "pdf", "--outdir", str(work), str(source)],
            timeout=300, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "HOME": str(work)},
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def converter_seconds(converter: OfficeConverter, source: Path, scratch: Path) -> float:
    t0 = time.perf_counter()
    converter.to_pdf(Document("docx", source, "bench"), scratch)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(scratch, ignore_errors=True)
    return elapsed


def conversion(section: Section, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-office-"))
    converter = OfficeConverter(1, timeout_s=300)
    seconds: dict[str, list[float]] = {f"{v} {p}": [] for v in ("faxmail", "bare") for p in PAGES}
    try:
        sources = {p: work / f"letter-{p}.docx" for p in PAGES}
        for pages, path in sources.items():
            path.write_bytes(letter(pages))
        bare_soffice(sources[1])  # warm the disk cache: the first start on a machine is slow

        def one(variant: str, _round: int) -> None:
            for pages, path in sources.items():
                if variant == "faxmail":
                    took = converter_seconds(converter, path, work / "scratch")
                else:
                    took = bare_soffice(path)
                seconds[f"{variant} {pages}"].append(took)

        interleaved(rounds, ["faxmail", "bare"], one)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for pages in PAGES:
        ours = section.add(
            Row(f"faxmail converter, {pages}-page DOCX", "s", seconds[f"faxmail {pages}"])
        )
        bare = section.add(Row(f"bare soffice, {pages}-page DOCX", "s", seconds[f"bare {pages}"]))
        section.add(ratio_row(f"faxmail / bare soffice, {pages} pages", ours, bare))
    for variant in ("faxmail", "bare"):
        first, last = seconds[f"{variant} 1"], seconds[f"{variant} 20"]
        slope = [(b - a) / 19 for a, b in zip(first, last, strict=True)]
        section.add(Row(f"{variant}: per extra page (1 → 20 pages)", "s", slope))


def throughput(section: Section, cfg: Config, rounds: int) -> None:
    rates: dict[str, list[float]] = {"quiet": [], "converting": []}
    office_replies: list[Timed] = []
    count = max(400, cfg.messages // 2)  # long enough to overlap several conversions
    with Lab("office") as lab:
        milter = lab.faxmail()
        pf = lab.postfix(milter)
        message = plain_mail(lab.signer)
        msg_file = lab.dir / "plain.eml"
        msg_file.write_bytes(message.replace(b"\r\n", b"\n"))  # smtp-source adds the CR
        msg_file.chmod(0o644)
        five = letter(5)

        def office_mail(n: int) -> bytes:
            raw = build_message(
                from_addr=AUTHOR,
                to=[FAX],
                subject="Invoice",
                attachments=[Attachment(five, DOCX, "invoice.docx")],
                message_id=f"<bench-office-{time.time_ns()}-{n}@example.jp>",
            )
            return lab.signer.sign(raw)

        _smtp_source(pf, msg_file, 50, cfg.sessions)  # warm-up

        def one(variant: str, _round: int) -> None:
            stop = threading.Event()

            def fax_sender() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    office_replies.append(send_timed(pf.host, pf.port, AUTHOR, FAX, office_mail(n)))

            senders = [threading.Thread(target=fax_sender) for _ in range(2)]
            if variant == "converting":
                for sender in senders:
                    sender.start()
                time.sleep(2)  # both conversions under way
            try:
                elapsed = _smtp_source(pf, msg_file, count, cfg.sessions)
            finally:
                stop.set()
                for sender in senders:
                    if sender.is_alive():
                        sender.join()
            rates[variant].append(count / elapsed)

        interleaved(rounds, ["quiet", "converting"], one)
    quiet = section.add(Row("non-fax mail, no conversion running", "mails/s", rates["quiet"]))
    busy = section.add(Row("non-fax mail, 2 senders of DOCX faxes", "mails/s", rates["converting"]))
    section.add(ratio_row("while converting / quiet", busy, quiet))
    codes: dict[int, int] = {}
    for reply in office_replies:
        codes[reply.code] = codes.get(reply.code, 0) + 1
    section.add(Row("DOCX faxes accepted (250) during the runs", "", [float(codes.get(250, 0))]))
    others = {code: n for code, n in codes.items() if code != 250}
    section.notes.append(f"DOCX fax replies other than 250: {others or 'none'}")


def run(cfg: Config) -> Section:
    section = Section("office", "8. Office files: DOCX conversion, and non-fax mail meanwhile")
    rounds = 1 if cfg.quick else 5
    conversion(section, rounds)
    throughput(section, cfg, rounds)
    return section
