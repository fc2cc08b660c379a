"""Mail → fax part 2 through the real Postfix: documents in, TIFF + call file + job out."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from faxmail.asterisk.callfile import parse_callfile
from faxmail.core.documents import Document
from faxmail.render.options import RenderOptions
from faxmail.render.renderer import Renderer
from infra.constants import BASE_POLICY
from infra.constants import FAX_DIGITS as FAX
from infra.dkimkeys import Signer
from infra.faxstate import callfiles, final_reply, finish_calls, job_rows, spool_dir
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.pdfs import make_encrypted_pdf, make_pdf, make_png, nested_forms_pdf
from infra.postfix import PostfixInstance, SendResult
from infra.protocols import MakePostfix, StartMilter

pytestmark = pytest.mark.postfix

POLICY = (
    BASE_POLICY
    + """\
limits: {max_pages: 12}
lines:  # two channels: a mail to two numbers is dialled at once
  - {name: trunk, channel: "PJSIP/{number}@trunk", channels: 2}
fax:
  render_timeout_s: 3
  render_timeout_per_page_s: 0.5
  header_info: ACME Corp
  local_station_id: +81 3 1234 5678
"""
)
Gateway = tuple[MilterProcess, PostfixInstance]


@pytest.fixture
def gateway(start_milter: StartMilter, make_postfix: MakePostfix) -> Gateway:
    milter = start_milter(None, POLICY)
    return milter, make_postfix(milter)


def send(
    postfix: PostfixInstance,
    signer: Signer,
    attachments: list[Attachment],
    **kw: object,
) -> SendResult:
    message = build_message(
        from_addr="alice@example.jp",
        to=[FAX],
        attachments=attachments,
        **kw,  # type: ignore[arg-type]
    )
    return postfix.send("alice@example.jp", [FAX], signer.sign(message))


def tiff_pages(path: Path) -> list[Image.Image]:
    pages = []
    with Image.open(path) as image:
        for n in range(getattr(image, "n_frames", 1)):
            image.seek(n)
            image.load()
            pages.append(image.copy())
            assert image.info.get("compression") == "group4"
    return pages


def the_fax(milter: MilterProcess) -> tuple[dict[str, str], list[Image.Image]]:
    (callfile,) = callfiles(milter)
    entries = parse_callfile(callfile.read_bytes())
    variables = dict(v.split("=", 1) for k, v in entries if k == "Setvar")
    return dict(entries) | variables, tiff_pages(Path(variables["FAXFILE"]))


def test_ten_page_pdf(gateway: Gateway, dkim_keys: dict[str, Signer]) -> None:
    milter, postfix = gateway
    result = send(postfix, dkim_keys["example.jp"], [Attachment(make_pdf(10), filename="ten.pdf")])
    assert final_reply(result).startswith("250"), result
    lines, pages = the_fax(milter)
    assert len(pages) == 10
    assert {page.size for page in pages} == {(1728, 2292)}  # A4, fine resolution
    expected = {"Channel", "Context", "Extension", "Priority", "MaxRetries", "RetryTime",
                "WaitTime", "Archive", "Setvar", "FAXMAIL_JOB", "FAXFILE", "FAXNUMBER",
                "FAXMAIL_HEADERINFO", "FAXMAIL_STATIONID", "FAXMAIL_ROUND"}  # fmt: skip
    assert set(lines) == expected
    assert (lines["FAXMAIL_HEADERINFO"], lines["FAXMAIL_STATIONID"]) == (
        "ACME Corp",
        "+81 3 1234 5678",
    )
    assert job_rows(milter, "pages, state") == [(10, "queued")]


def test_two_pdfs_joined_in_order(
    gateway: Gateway, dkim_keys: dict[str, Signer], tmp_path: Path
) -> None:
    milter, postfix = gateway
    first, second = make_pdf(1, text="FIRST"), make_pdf(2, text="SECOND")
    result = send(
        postfix,
        dkim_keys["example.jp"],
        [Attachment(first, filename="1.pdf"), Attachment(second, filename="2.pdf")],
    )
    assert final_reply(result).startswith("250"), result
    _, pages = the_fax(milter)
    assert len(pages) == 3
    # Page 1 of the fax is the first PDF: render it alone and compare pixels.
    alone = tmp_path / "first.pdf"
    alone.write_bytes(first)
    work = tmp_path / "work"
    work.mkdir()
    rendered = Renderer(RenderOptions()).render([Document("pdf", alone, "first")], work)
    assert tiff_pages(rendered.tiff)[0].tobytes() == pages[0].tobytes()
    assert pages[1].tobytes() != pages[0].tobytes()


def test_png_is_one_page(gateway: Gateway, dkim_keys: dict[str, Signer]) -> None:
    milter, postfix = gateway
    png = Attachment(make_png(), content_type="image/png", filename="scan.png")
    assert final_reply(send(postfix, dkim_keys["example.jp"], [png])).startswith("250")
    assert len(the_fax(milter)[1]) == 1


@pytest.mark.parametrize(
    ("attachments", "expected"),
    [
        (
            [Attachment(make_encrypted_pdf(), filename="locked.pdf")],
            "550 5.6.0 the PDF is password-protected",
        ),
        ([Attachment(make_pdf(2)[:400], filename="cut.pdf")], "550 5.6.0"),
        (
            [Attachment(b"just text, really", content_type="application/pdf", filename="x.pdf")],
            "550 5.6.0",
        ),
        ([], "550 5.6.0 no PDF or image attachment found"),
        ([Attachment(make_pdf(13), filename="long.pdf")], "552 5.3.4"),
    ],
    ids=["encrypted", "truncated", "not a PDF", "no attachment", "too many pages"],
)
def test_bad_documents(
    gateway: Gateway, dkim_keys: dict[str, Signer], attachments: list[Attachment], expected: str
) -> None:
    milter, postfix = gateway
    result = send(postfix, dkim_keys["example.jp"], attachments)
    assert final_reply(result).startswith(expected), result
    assert callfiles(milter) == [] and job_rows(milter) == []
    assert list((spool_dir(milter) / "fax").iterdir()) == []


def test_hostile_and_japanese_subjects_never_reach_the_call_file(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    hostile = 'Invoice\n;touch /tmp/pwned $(id) `id` "quoted" \\x22'
    pdf = [Attachment(make_pdf(1), filename="a.pdf")]
    # RFC 2047 carries the newline inside the subject, past every header parser.
    result = send(postfix, dkim_keys["example.jp"], pdf, subject=hostile, subject_charset="utf-8")
    assert final_reply(result).startswith("250"), result
    assert len(callfiles(milter)) == 1
    finish_calls(milter)  # the same number: its next job is dialled once the first call ended
    japanese = "請求書の送付について"
    result = send(
        postfix, dkim_keys["example.jp"], pdf, subject=japanese, subject_charset="iso-2022-jp"
    )
    assert final_reply(result).startswith("250")
    texts = [path.read_bytes() for path in callfiles(milter)]
    assert len(texts) == 2
    for text in texts:
        for fragment in (b"touch", b"$(", b"`", b'"quoted"', b"Invoice", b"\x1b$B"):
            assert fragment not in text
    subjects = [row[0] for row in job_rows(milter, "subject")]
    assert subjects[1] == japanese
    assert "touch /tmp/pwned $(id)" in str(subjects[0]) and "\n" not in str(subjects[0])
    assert not Path("/tmp/pwned").exists()


def send_endless_pdf(
    postfix: PostfixInstance, signer: Signer
) -> tuple[threading.Thread, list[SendResult]]:
    """Start sending a PDF that keeps Ghostscript busy forever; the reply lands in the list."""
    results: list[SendResult] = []
    endless = [Attachment(nested_forms_pdf(), filename="x.pdf")]
    sender = threading.Thread(target=lambda: results.append(send(postfix, signer, endless)))
    sender.start()
    return sender, results


def test_endless_pdf_is_stopped_while_other_mail_flows(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    slow, results = send_endless_pdf(postfix, dkim_keys["example.jp"])
    ordinary = build_message(from_addr="carol@other.example", to=["bob@example.jp"])
    for _ in range(3):
        result = postfix.send("carol@other.example", ["bob@example.jp"], ordinary)
        assert final_reply(result).startswith("250")
    good = send(postfix, dkim_keys["example.jp"], [Attachment(make_pdf(1), filename="ok.pdf")])
    assert final_reply(good).startswith("250")
    slow.join(timeout=60)
    assert final_reply(results[0]).startswith("552 5.3.4"), results
    assert "took too long" in final_reply(results[0])
    assert len(callfiles(milter)) == 1
    assert not ghostscript_running(milter), "no Ghostscript left running"


def test_killed_while_rendering_nothing_is_left(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    slow, results = send_endless_pdf(postfix, dkim_keys["example.jp"])
    wait_until(lambda: ghostscript_running(milter))
    assert milter.pid is not None
    os.kill(milter.pid, signal.SIGKILL)
    wait_until(lambda: not ghostscript_running(milter))  # gs dies with its daemon
    slow.join(timeout=30)
    assert final_reply(results[0]).startswith("451"), results  # the sender retries later
    milter.start()
    assert callfiles(milter) == [] and job_rows(milter) == []
    assert list((spool_dir(milter) / "fax").iterdir()) == []
    assert list((Path(milter.settings["state_dir"]) / "work").iterdir()) == []


def test_one_job_per_fax_recipient(gateway: Gateway, dkim_keys: dict[str, Signer]) -> None:
    milter, postfix = gateway
    second = "fax+06-1234-5678@example.jp"
    message = build_message(
        from_addr="alice@example.jp",
        to=[FAX, second],
        attachments=[Attachment(make_pdf(1), filename="a.pdf")],
    )
    result = postfix.send("alice@example.jp", [FAX, second], dkim_keys["example.jp"].sign(message))
    assert final_reply(result).startswith("250"), result
    channels = sorted(dict(parse_callfile(c.read_bytes()))["Channel"] for c in callfiles(milter))
    assert channels == ["PJSIP/0312345678@trunk", "PJSIP/0612345678@trunk"]


def test_archive_instead_of_discard(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    policy = POLICY + "  after_queueing: archive\n  archive_address: faxarchive@example.jp\n"
    milter = start_milter(None, policy)
    postfix = make_postfix(milter)
    result = send(postfix, dkim_keys["example.jp"], [Attachment(make_pdf(1), filename="a.pdf")])
    assert final_reply(result).startswith("250"), result
    (archived,) = postfix.wait_for_delivery("faxarchive@example.jp")
    (job_id,) = [row[0] for row in job_rows(milter)]
    assert f"X-Faxmail-Job: {job_id}".encode() in archived
    assert postfix.messages(FAX) == []


def ghostscript_running(milter: MilterProcess) -> bool:
    """A gs of this milter: its output file is under the milter's work folder."""
    work = Path(milter.settings["state_dir"]) / "work"
    found = subprocess.run(["pgrep", "-f", f"gs .*{work}"], check=False, capture_output=True)
    return found.returncode == 0


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("point", ["admitted", "tiff-placed", "committed"])
def test_crash_while_queueing_leaves_it_whole(
    gateway: Gateway, dkim_keys: dict[str, Signer], point: str
) -> None:
    milter, postfix = gateway
    message = dkim_keys["example.jp"].sign(
        build_message(
            from_addr="alice@example.jp",
            to=[FAX],
            message_id="<crash@example.jp>",
            attachments=[Attachment(make_pdf(1), filename="a.pdf")],
        )
    )
    milter.stop()
    milter.env = {**os.environ, "FAXMAIL_CRASH_AT": point}
    milter.start()
    result = postfix.send("alice@example.jp", [FAX], message)
    assert final_reply(result).startswith("451"), result  # killed: Postfix's milter_default_action
    wait_until(lambda: not milter.running())
    milter.env = None
    milter.start()  # repairs what the crash left
    states = [state for _, state in job_rows(milter)]
    calls = callfiles(milter)
    if point == "committed":  # queued: the dispatcher places its call after the restart
        assert states == ["queued"] and len(calls) == 1
    else:
        assert states == ["abandoned"] and calls == []
        assert list((spool_dir(milter) / "fax").iterdir()) == []
    assert list((spool_dir(milter) / "faxmail-staging").iterdir()) == []
    # The sender's MTA retries: exactly one fax in every case.
    assert final_reply(postfix.send("alice@example.jp", [FAX], message)).startswith("250")
    assert len(callfiles(milter)) == 1
    assert [s for _, s in job_rows(milter) if s == "queued"] == ["queued"]
