"""Office attachments through the real Postfix: converted by LibreOffice, faxed with the pages
they have, read back by OCR; a macro document and a password-protected workbook refused."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from faxmail.asterisk.callfile import parse_callfile
from infra import officefiles as of
from infra.constants import BASE_POLICY
from infra.constants import FAX_DIGITS as FAX
from infra.dkimkeys import Signer
from infra.faxstate import callfiles, final_reply, job_rows, spool_dir
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.pdfs import make_pdf
from infra.postfix import PostfixInstance, SendResult
from infra.protocols import MakePostfix, StartMilter

pytestmark = pytest.mark.postfix

POLICY = BASE_POLICY + "limits: {max_pages: 12}\n"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
LETTER = [
    ["請求書の送付について", "株式会社サンプル 御中"],
    ["お見積書を同封いたします"],
    ["ご確認のほどよろしくお願いいたします"],
]
TABLE: list[list[str | float]] = [
    ["Item", "Quantity", "Price"],
    *[[f"Widget {n:02d}", float(n), n * 7.5] for n in range(1, 13)],
]
Gateway = tuple[MilterProcess, PostfixInstance]


@pytest.fixture
def gateway(start_milter: StartMilter, make_postfix: MakePostfix) -> Gateway:
    milter = start_milter(None, POLICY)
    return milter, make_postfix(milter)


def send(postfix: PostfixInstance, signer: Signer, attachment: Attachment) -> SendResult:
    message = build_message(from_addr="alice@example.jp", to=[FAX], attachments=[attachment])
    return postfix.send("alice@example.jp", [FAX], signer.sign(message))


def fax_pages(milter: MilterProcess) -> list[Image.Image]:
    """The pages of the one call file's TIFF."""
    (callfile,) = callfiles(milter)
    entries = parse_callfile(callfile.read_bytes())
    variables = dict(v.split("=", 1) for k, v in entries if k == "Setvar")
    pages = []
    with Image.open(variables["FAXFILE"]) as image:
        for number in range(getattr(image, "n_frames", 1)):
            image.seek(number)
            pages.append(image.copy())
    return pages


def ocr(page: Image.Image, lang: str) -> str:
    """The text tesseract reads on a fax page: made grey and square-pixelled at 300 dpi first
    (a fine fax page is 204 x 196 dpi), whitespace removed (Japanese has none)."""
    grey = page.convert("L").resize((2541, 3508), Image.Resampling.BICUBIC)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "page.png"
        grey.save(path)
        result = subprocess.run(
            ["tesseract", str(path), "stdout", "-l", lang, "--psm", "3", "--dpi", "300"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    return "".join(unicodedata.normalize("NFKC", result.stdout).split())


def test_japanese_docx_is_faxed_page_for_page(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    letter = Attachment(of.docx(LETTER, size_pt=20), content_type=DOCX, filename="請求書.docx")
    result = send(postfix, dkim_keys["example.jp"], letter)
    assert final_reply(result).startswith("250"), result
    pages = fax_pages(milter)
    assert len(pages) == 3
    assert {page.size for page in pages} == {(1728, 2292)}
    assert job_rows(milter, "pages, state") == [(3, "queued")]
    first, last = ocr(pages[0], "jpn+eng"), ocr(pages[2], "jpn+eng")
    assert "請求書の送付" in first and "株式会社" in first, first
    assert "確認" in last, last


def test_xlsx_table_is_faxed_and_readable(gateway: Gateway, dkim_keys: dict[str, Signer]) -> None:
    milter, postfix = gateway
    # a generic type: the name makes it a candidate, the content says what it is
    table = Attachment(of.xlsx(TABLE), "application/octet-stream", filename="prices.xlsx")
    result = send(postfix, dkim_keys["example.jp"], table)
    assert final_reply(result).startswith("250"), result
    pages = fax_pages(milter)
    assert len(pages) == 1
    text = ocr(pages[0], "eng")
    for expected in ("Quantity", "Widget01", "Widget12", "90"):
        assert expected in text, text


@pytest.mark.parametrize(
    ("attachment", "expected"),
    [
        (
            Attachment(of.docx(LETTER, macro=True), content_type=DOCX, filename="letter.docm"),
            "550 5.6.1 attachment 1 (letter.docm) contains macros, which are not accepted",
        ),
        (
            Attachment(of.encrypted_xlsx(of.xlsx(TABLE)), content_type=XLSX, filename="b.xlsx"),
            "550 5.6.0 attachment 1 (b.xlsx) is password-protected",
        ),
    ],
    ids=["docx with a macro", "password-protected xlsx"],
)
def test_macros_and_passwords_are_refused(
    gateway: Gateway, dkim_keys: dict[str, Signer], attachment: Attachment, expected: str
) -> None:
    milter, postfix = gateway
    result = send(postfix, dkim_keys["example.jp"], attachment)
    assert final_reply(result).startswith(expected), result
    assert callfiles(milter, timeout=1) == [] and job_rows(milter) == []
    assert list((spool_dir(milter) / "fax").iterdir()) == []


def _running(token: str) -> bool:
    """Is any process whose command line holds `token` still alive?"""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and token.encode() in (entry / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def _wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_hanging_conversion_holds_up_no_other_mail_and_dies_with_the_daemon(
    start_milter: StartMilter,
    make_postfix: MakePostfix,
    dkim_keys: dict[str, Signer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A LibreOffice that never finishes (and ignores SIGTERM), first on the daemon's PATH.
    token = f"faxmail-office-hang-{os.getpid()}"
    fake = tmp_path / "bin" / "soffice"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nsh -c 'trap \"\" TERM; sleep 300' {token} &\nwait\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    milter = start_milter(None, POLICY)
    postfix = make_postfix(milter)
    signer = dkim_keys["example.jp"]
    results: list[SendResult] = []
    letter = Attachment(of.docx(LETTER), content_type=DOCX, filename="letter.docx")
    slow = threading.Thread(target=lambda: results.append(send(postfix, signer, letter)))
    slow.start()
    _wait_until(lambda: _running(token))
    # meanwhile: ordinary mail and a PDF fax are answered as always
    ordinary = build_message(from_addr="carol@other.example", to=["bob@example.jp"])
    for _ in range(3):
        result = postfix.send("carol@other.example", ["bob@example.jp"], ordinary)
        assert final_reply(result).startswith("250"), result
    pdf = Attachment(make_pdf(1), filename="ok.pdf")
    assert final_reply(send(postfix, signer, pdf)).startswith("250")
    assert _running(token) and slow.is_alive()
    # the daemon killed: the conversion's whole process tree goes with it
    assert milter.pid is not None
    os.kill(milter.pid, signal.SIGKILL)
    _wait_until(lambda: not _running(token))
    slow.join(timeout=60)
    assert final_reply(results[0]).startswith("451"), results  # the sender retries later
    assert len(job_rows(milter)) == 1  # the PDF's
