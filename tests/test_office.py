"""Office files: recognised by their bytes (render/officefile.py), macros and passwords refused
before LibreOffice sees them, converted in LibreOffice's sandbox (render/office.py)."""

from __future__ import annotations

import base64
import os
import random
import socket
import subprocess
import threading
import time
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from faxmail.core.documents import Document
from faxmail.core.replies import (
    DOCUMENT_DAMAGED,
    LOCAL_ERROR,
    NOTHING_TO_FAX,
    OFFICE_CONVERSION_FAILED,
    OFFICE_CONVERTER_BUSY,
    OFFICE_ENCRYPTED,
    OFFICE_MACROS,
    RENDER_TOO_SLOW,
    Refusal,
    Reply,
)
from faxmail.outbound.extract import extract_documents
from faxmail.outbound.mimeparse import parse_message
from faxmail.render import office
from faxmail.render.office import OfficeConverter, sandbox_command
from faxmail.render.officefile import recognise
from faxmail.render.options import RenderOptions
from faxmail.render.renderer import Renderer
from infra import officefiles as of

ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
ODP = "application/vnd.oasis.opendocument.presentation"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
LETTER = [["請求書の送付について", "Invoice 2026-1138"], ["Page two"], ["Page three"]]


def refused(path: Path, **kw: object) -> Reply:
    with pytest.raises(Refusal) as caught:
        recognise(path, "attachment 1", text=bool(kw.get("text")))
    return caught.value.reply


# --------------------------------------------------------------------------- recognition


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (of.docx(LETTER), "docx"),
        (of.xlsx([["a", 1.0]]), "xlsx"),
        (of.odf(ODT), "odt"),
        (of.odf(ODS), "ods"),
        (of.odf(ODP), "odp"),
        (b"{\\rtf1\\ansi hello}", "rtf"),
        (of.cfb({"WordDocument": of.word_fib()}), "doc"),
        (of.cfb({"Workbook": of.biff_globals()}), "xls"),
        (of.cfb({"Book": of.biff_globals()}), "xls"),
        # ZIP and OLE files of other kinds are not ours
        (of.odf("application/vnd.oasis.opendocument.graphics"), None),
        (of.cfb({"Something": b"x"}), None),
        (b"plain words", None),  # text only when the sender says it is text
    ],
    ids=[
        "docx",
        "xlsx",
        "odt",
        "ods",
        "odp",
        "rtf",
        "doc",
        "xls",
        "xls-biff5",
        "odg",
        "ole",
        "text",
    ],
)
def test_formats_are_recognised_by_content(data: bytes, kind: str | None, tmp_path: Path) -> None:
    path = tmp_path / "part.new"
    path.write_bytes(data)
    assert recognise(path, "attachment 1", text=False) == kind


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (of.docx(LETTER, macro=True), OFFICE_MACROS),
        (of.xlsx([["a"]], macro_sheet=True), OFFICE_MACROS),
        (of.odf(ODT, {"Basic/Standard/Module1.xml": "<x/>"}), OFFICE_MACROS),
        (of.odf(ODS, {"Scripts/python/evil.py": "import os"}), OFFICE_MACROS),
        (of.odf(ODP, {"Basic/Standard/Module1.xml": "<x/>"}), OFFICE_MACROS),
        (of.odf(ODT, {"Object 1/Basic/Standard/Module1.xml": "<x/>"}), OFFICE_MACROS),
        (of.cfb({"WordDocument": of.word_fib()}, {"Macros": {"PROJECT": b"x"}}), OFFICE_MACROS),
        (of.cfb({"Workbook": of.biff_globals()}, {"_VBA_PROJECT_CUR": {"VBA": b"x"}}),
         OFFICE_MACROS),
        (of.cfb({"Workbook": of.biff_globals(macro_sheet=True)}), OFFICE_MACROS),
        (of.encrypted_xlsx(of.xlsx([["secret"]])), OFFICE_ENCRYPTED),
        (of.odf(ODT, {"META-INF/manifest.xml": "<manifest:encryption-data/>"}), OFFICE_ENCRYPTED),
        (of.cfb({"WordDocument": of.word_fib(encrypted=True)}), OFFICE_ENCRYPTED),
        (of.cfb({"Workbook": of.biff_globals(filepass=True)}), OFFICE_ENCRYPTED),
        (of.docx(LETTER)[:300], DOCUMENT_DAMAGED),
        (of.cfb({"WordDocument": of.word_fib()})[:1200], DOCUMENT_DAMAGED),
        (of.cfb({"Workbook": b"\x01\x02\x03\x04garbage"}), DOCUMENT_DAMAGED),
    ],
    ids=["docm", "xlsx-xlm", "odt-basic", "ods-scripts", "odp-basic", "odt-embedded-basic",
         "doc-macros",
         "xls-vba", "xls-xlm", "xlsx-password", "odt-password", "doc-password", "xls-password",
         "docx-cut", "doc-cut", "xls-garbage"],
)  # fmt: skip
def test_macros_passwords_and_damage_are_refused(
    data: bytes, expected: Reply, tmp_path: Path
) -> None:
    path = tmp_path / "part.new"
    path.write_bytes(data)
    reply = refused(path)
    assert (reply.code, reply.enhanced) == (expected.code, expected.enhanced)
    assert reply.text.startswith("attachment 1 ")
    assert expected.text.split("}", 1)[1].split("{")[0] in reply.text


@pytest.mark.parametrize(
    ("data", "charset"),
    [
        ("請求書 UTF-8\n".encode(), None),
        ("\ufeff請求書 BOM\n".encode(), None),
        ("請求書 JIS\n".encode("iso-2022-jp"), None),
        ("請求書 SJIS\n".encode("cp932"), "shift_jis"),
        ("請求書 EUC\n".encode("euc-jp"), "euc-jp"),
        ("請求書 guessed SJIS\n".encode("cp932"), None),
        ("請求書 wrong label\n".encode(), "x-unknown"),
    ],
)
def test_text_attachments_become_utf8(data: bytes, charset: str | None, tmp_path: Path) -> None:
    path = tmp_path / "part.new"
    path.write_bytes(data)
    assert recognise(path, "attachment 1", text=True, charset=charset) == "txt"
    assert path.read_text("utf-8").lstrip("\ufeff").startswith("請求書")


def test_binary_declared_as_text_and_codec_tricks_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "part.new"
    path.write_bytes(b"\x00\x01\x02binary")
    assert refused(path, text=True).text.endswith("it is not text in a known character set")
    # "zlib" is a codec, not a character set: never used to "decode" an attachment
    path.write_bytes(b"x\x9c" + b"\x00" * 20)
    with pytest.raises(Refusal):
        recognise(path, "attachment 1", text=True, charset="zlib")


# --------------------------------------------------------------------------- extraction


def mail(*parts: MIMEBase) -> bytes:
    outer = MIMEMultipart()
    outer["From"] = "alice@example.com"
    outer.attach(MIMEText("Please fax the attachment.\n"))
    for part in parts:
        outer.attach(part)
    return outer.as_bytes()


def attachment(data: bytes, ctype: str, name: str | None) -> MIMEBase:
    part = MIMEBase(*ctype.split("/"))
    part.set_payload(base64.encodebytes(data).decode("ascii"))
    part["Content-Transfer-Encoding"] = "base64"
    if name is not None:
        part.add_header("Content-Disposition", "attachment", filename=name)
    return part


def kinds(raw: bytes, workdir: Path) -> list[tuple[str, str]]:
    return [(d.kind, d.path.name) for d in extract_documents(parse_message(raw), workdir)]


def test_extract_takes_office_files_by_type_or_name_and_content_decides(tmp_path: Path) -> None:
    raw = mail(
        attachment(of.docx(LETTER), DOCX_TYPE, "letter.docx"),
        attachment(of.xlsx([["a"]]), "application/octet-stream", "table.xlsx"),
        attachment(of.docx(LETTER), "application/octet-stream", "renamed.doc"),
        attachment(of.xlsx([["a"]]), "application/octet-stream", "other.bin"),  # no: name
        attachment(b"just words", "application/octet-stream", "notes.docx"),  # no: content
    )
    assert kinds(raw, tmp_path) == [
        ("docx", "part-01.docx"),
        ("xlsx", "part-02.xlsx"),
        ("docx", "part-03.docx"),
    ]


def test_text_attachments_are_documents_but_the_body_is_not(tmp_path: Path) -> None:
    text = MIMEText("請求書\n", "plain", "iso-2022-jp")
    text.add_header("Content-Disposition", "attachment", filename="memo.txt")
    assert kinds(mail(text), tmp_path) == [("txt", "part-01.txt")]
    assert (tmp_path / "part-01.txt").read_text("utf-8") == "請求書\n"
    with pytest.raises(Refusal) as caught:
        extract_documents(parse_message(mail()), tmp_path / "none")
    assert caught.value.reply == NOTHING_TO_FAX


def test_declared_office_file_that_is_none_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Refusal) as caught:
        extract_documents(parse_message(mail(attachment(b"hello", DOCX_TYPE, "x.docx"))), tmp_path)
    assert caught.value.reply.text == (
        "attachment 1 (x.docx) cannot be read: it is not a DOCX, DOC, XLSX, XLS, ODT, ODS,"
        " ODP, RTF or PPTX file"
    )
    assert list(tmp_path.iterdir()) == []


def test_extract_refuses_a_macro_document_and_removes_what_it_wrote(tmp_path: Path) -> None:
    raw = mail(
        attachment(of.docx(LETTER), DOCX_TYPE, "fine.docx"),
        attachment(of.docx(LETTER, macro=True), "application/octet-stream", "evil.docm"),
    )
    with pytest.raises(Refusal) as caught:
        extract_documents(parse_message(raw), tmp_path)
    assert str(caught.value.reply).startswith("550 5.6.1 attachment 2 (evil.docm) contains macros")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the sandbox


def test_the_sandbox_has_no_network(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"
        outside = subprocess.run(["python3", "-c", probe], capture_output=True, check=False)
        inside = subprocess.run(
            sandbox_command(["python3", "-c", probe], 10, 2**30, 2**20),
            capture_output=True,
            check=False,
        )
    assert outside.returncode == 0
    assert inside.returncode != 0 and b"Network is unreachable" in inside.stderr


def fake_soffice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """A `soffice` first on PATH that runs `script` (sh) with $out and $in set."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / "soffice"
    program.write_text(
        "#!/bin/sh\n"
        'for a; do out_next=$take; take=; [ "$a" = --outdir ] && take=1;'
        ' [ -n "$out_next" ] && out=$a; in=$a; case $a in -env:UserInstallation=*)'
        " profile=${a#*file://};; esac; done\n" + script
    )
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return program


BLANK = "printf '%%PDF-1.4\\n' > \"$out/document.pdf\"\n"


def office_doc(tmp_path: Path) -> Document:
    path = tmp_path / "part-01.docx"
    path.write_bytes(of.docx(LETTER))
    return Document("docx", path, "attachment 1 (letter.docx)")


def test_profile_is_private_macro_security_highest_and_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "record"
    fake_soffice(
        tmp_path,
        monkeypatch,
        f'cat "$profile/user/registrymodifications.xcu" > {record}; echo "$profile" >> {record}\n'
        + BLANK,
    )
    work = tmp_path / "work"
    work.mkdir()
    with OfficeConverter(1).as_pdfs([office_doc(tmp_path)], work) as pdfs:
        assert [d.kind for d in pdfs] == ["pdf"]
        assert pdfs[0].path.read_bytes().startswith(b"%PDF-")
    text = record.read_text()
    assert '"MacroSecurityLevel" oor:op="fuse"><value>3' in text
    assert '"DisableMacrosExecution" oor:op="fuse"><value>true' in text
    profile = Path(text.splitlines()[-1])
    assert profile.is_relative_to(work) and not profile.exists()
    assert list(work.iterdir()) == []


def test_no_pdf_is_the_documents_fault_when_a_test_page_converts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_soffice(
        tmp_path,
        monkeypatch,
        "case $in in *.txt) " + BLANK.strip() + ';; *) echo "Error: source file could not be'
        ' loaded"; exit 0;; esac\n',
    )
    with pytest.raises(Refusal) as caught:
        OfficeConverter(1).to_pdf(office_doc(tmp_path), tmp_path / "scratch")
    assert caught.value.reply == OFFICE_CONVERSION_FAILED.format(
        name="attachment 1 (letter.docx)", why="source file could not be loaded"
    )


def test_a_libreoffice_that_converts_nothing_is_a_local_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_soffice(tmp_path, monkeypatch, "exit 1\n")
    with pytest.raises(Refusal) as caught:
        OfficeConverter(1).to_pdf(office_doc(tmp_path), tmp_path / "scratch")
    assert caught.value.reply == LOCAL_ERROR


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_hanging_conversion_is_killed_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"faxmail-hang-{os.getpid()}"
    # a child that ignores SIGTERM and a grandchild in its own session: both must die
    fake_soffice(
        tmp_path,
        monkeypatch,
        f"sh -c 'trap \"\" TERM; sleep 300' {token} &\nsetsid sh -c 'sleep 301' {token} &\nwait\n",
    )
    with pytest.raises(Refusal) as caught:
        OfficeConverter(1, timeout_s=1).to_pdf(office_doc(tmp_path), tmp_path / "scratch")
    assert caught.value.reply.code == RENDER_TOO_SLOW.code
    assert "conversion took longer than 1 s" in caught.value.reply.text
    # SIGKILL is sent before the refusal; on a loaded machine the kernel may take a moment to
    # tear the namespace down, so wait (bounded) for the processes to be gone.
    deadline = time.monotonic() + 15
    while _processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(token) == []


def test_the_render_options_set_the_conversion_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # policy fax.office_timeout_s → RenderOptions.office_timeout_s → this conversion's limit
    fake_soffice(tmp_path, monkeypatch, "sleep 300\n")
    work = tmp_path / "work"
    work.mkdir()
    renderer = Renderer(RenderOptions(office_timeout_s=1))
    with pytest.raises(Refusal) as caught:
        renderer.render([office_doc(tmp_path)], work)
    assert caught.value.reply.code == RENDER_TOO_SLOW.code
    assert "conversion took longer than 1 s" in caught.value.reply.text  # not the default 60


def test_conversions_beyond_the_slots_are_busy(tmp_path: Path) -> None:
    converter = OfficeConverter(1, slot_wait_s=0.05)
    assert converter.slots.acquire(timeout=1)
    try:
        with pytest.raises(Refusal) as caught:
            converter.to_pdf(office_doc(tmp_path), tmp_path / "scratch")
    finally:
        converter.slots.release()
    assert caught.value.reply == OFFICE_CONVERTER_BUSY
    assert caught.value.reply.temporary


def test_stop_all_kills_a_running_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_soffice(tmp_path, monkeypatch, "sleep 300\n")
    converter = OfficeConverter(1, timeout_s=120)
    errors: list[Refusal] = []

    def convert() -> None:
        try:
            converter.to_pdf(office_doc(tmp_path), tmp_path / "scratch")
        except Refusal as refusal:
            errors.append(refusal)

    worker = threading.Thread(target=convert)
    worker.start()
    while not converter.processes.running and worker.is_alive():
        worker.join(0.05)
    converter.stop_all()
    worker.join(30)
    assert not worker.is_alive()
    assert [e.reply for e in errors] == [LOCAL_ERROR]


# --------------------------------------------------------------------------- LibreOffice


@pytest.fixture(scope="module")
def made_by_libreoffice() -> dict[str, bytes]:
    """Each accepted format as LibreOffice itself writes it."""
    letter, table = of.docx(LETTER), of.xlsx([["Item", "Qty"], ["Widget", 3.0]])
    return {
        "doc": of.libreoffice_convert(letter, "docx", "doc"),
        "odt": of.libreoffice_convert(letter, "docx", "odt"),
        "rtf": of.libreoffice_convert(letter, "docx", "rtf"),
        "xls": of.libreoffice_convert(table, "xlsx", "xls"),
        "ods": of.libreoffice_convert(table, "xlsx", "ods"),
        "pptx": of.libreoffice_convert(of.fodp(["Slide one", "Slide two"]).encode(), "fodp",
                                       "pptx"),
        "odp": of.libreoffice_convert(of.fodp(["Slide one", "Slide two"]).encode(), "fodp",
                                      "odp"),
    }  # fmt: skip


def test_files_libreoffice_wrote_are_recognised(
    made_by_libreoffice: dict[str, bytes], tmp_path: Path
) -> None:
    for kind, data in made_by_libreoffice.items():
        path = tmp_path / kind
        path.write_bytes(data)
        assert recognise(path, kind, text=False) == kind


def fax_pages(documents: list[Document], workdir: Path) -> int:
    return Renderer(RenderOptions()).render(documents, workdir).pages


def test_documents_are_faxed_with_their_page_counts(
    made_by_libreoffice: dict[str, bytes], tmp_path: Path
) -> None:
    documents = []
    for kind, data in [("docx", of.docx(LETTER)), *made_by_libreoffice.items()]:
        if kind in ("docx", "doc", "pptx", "odp"):
            path = tmp_path / f"part.{kind}"
            path.write_bytes(data)
            documents.append(Document(kind, path, kind))  # type: ignore[arg-type]
    text = tmp_path / "part.txt"
    text.write_text("one line of text\n")
    documents.append(Document("txt", text, "txt"))
    work = tmp_path / "work"
    work.mkdir()
    assert fax_pages(documents, work) == 3 + 3 + 2 + 2 + 1
    assert [p.name for p in work.iterdir()] == ["fax.tif"]


def test_the_page_limit_applies_to_the_converted_document(tmp_path: Path) -> None:
    path = tmp_path / "part.docx"
    path.write_bytes(of.docx(LETTER))
    renderer = Renderer(RenderOptions(max_pages=2))
    with pytest.raises(Refusal) as caught:
        renderer.render([Document("docx", path, "a")], tmp_path)
    assert str(caught.value.reply) == "552 5.3.4 the fax has 3 pages; at most 2 are allowed"


def test_soffice_missing_is_a_local_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(office, "SOFFICE", "faxmail-no-such-soffice")
    with pytest.raises(FileNotFoundError):
        OfficeConverter(1).to_pdf(office_doc(tmp_path), tmp_path / "scratch")


def test_mutated_office_files_only_ever_refuse_or_are_recognised(tmp_path: Path) -> None:
    """Random damage to each container: a kind, None or a Refusal, never another exception
    (the daemon would answer 451 to a damaged document)."""
    bases = [
        of.cfb({"WordDocument": of.word_fib()}, {"Macros": {"PROJECT": b"x"}}),
        of.cfb({"Workbook": of.biff_globals()}),
        of.encrypted_xlsx(of.xlsx([["a"]])),
        of.docx(LETTER),
        of.odf(ODT),
    ]
    rng = random.Random(14)
    path = tmp_path / "part.new"
    for _ in range(1500):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(8, len(data))]
        path.write_bytes(bytes(data))
        try:
            recognise(path, "attachment 1", text=False)
        except Refusal as refusal:
            assert refusal.reply.code == "550"
