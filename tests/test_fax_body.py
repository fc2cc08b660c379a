"""The mail's text, a cover sheet and a preview, through the real Postfix: signed mail in, fax
pages (read back by OCR) and call files out, or the pages mailed back without a call."""

from __future__ import annotations

import email
import email.message
import email.policy
import io
import re
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

import pytest
import yaml
from PIL import Image

from infra.constants import BASE_POLICY
from infra.constants import FAX_DIGITS as FAX
from infra.dkimkeys import Signer
from infra.faxstate import callfiles, final_reply, job_rows, spool_dir
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.pdfs import make_pdf
from infra.postfix import PostfixInstance
from infra.protocols import MakePostfix, StartMilter
from test_fax_documents import the_fax

pytestmark = pytest.mark.postfix

BIN = Path(sys.executable).parent
ALICE = "alice@example.jp"
LETTER = "お世話になっております。本日の会議資料をお送りします。\nMeeting at 10:30 in room 4.\n"
POLICY = (
    BASE_POLICY
    + """\
language: ja
limits: {max_pages: 12}
notify: {from_address: "FAX Gateway <fax-gw@example.jp>"}
fax:
  body: when_no_attachment
"""
)
Gateway = tuple[MilterProcess, PostfixInstance]


def start(start_milter: StartMilter, make_postfix: MakePostfix, policy: str) -> Gateway:
    # notify's hand-over goes nowhere yet (Postfix's port is known only once it runs): a
    # preview then waits in the spool, and `faxmail-notify retry` delivers it (see below)
    milter = start_milter({"mail": {"transport": "smtp", "host": "127.0.0.1", "port": 9}}, policy)
    return milter, make_postfix(milter)


def ocr(page: Image.Image) -> str:
    """The page's text as tesseract (jpn+eng) reads it at 300 dpi, spaces removed."""
    size = (round(page.width / 204 * 300), round(page.height / 196 * 300))
    with tempfile.TemporaryDirectory(prefix="fxm-ocr-") as tmp:
        path = Path(tmp) / "page.png"
        page.convert("L").resize(size, Image.Resampling.BICUBIC).save(path)
        read = subprocess.run(
            ["tesseract", str(path), "stdout", "-l", "jpn+eng", "--psm", "3", "--dpi", "300"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", read.stdout))


def signed(signer: Signer, to: str, **kw: object) -> bytes:
    return signer.sign(build_message(from_addr=ALICE, from_name="山田太郎", to=[to], **kw))  # type: ignore[arg-type]


def test_body_only_iso2022jp_is_faxed_and_readable(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = start(start_milter, make_postfix, POLICY)
    body = LETTER + "\n-- \n山田太郎 (this signature is not faxed)\n"
    message = signed(dkim_keys["example.jp"], FAX, body=body, body_charset="iso-2022-jp")
    assert b"iso-2022-jp" in message.lower()
    result = postfix.send(ALICE, [FAX], message)
    assert final_reply(result).startswith("250"), result
    _, pages = the_fax(milter)
    assert len(pages) == 1 and pages[0].size == (1728, 2292)
    assert job_rows(milter, "pages, state") == [(1, "queued")]
    text = ocr(pages[0])
    assert "会議資料をお送りします" in text and "Meetingat10:30inroom4" in text, text
    assert "signature" not in text


def test_no_attachment_no_text_is_refused(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = start(start_milter, make_postfix, POLICY)
    message = signed(dkim_keys["example.jp"], FAX, body="\n-- \nonly a signature\n")
    result = postfix.send(ALICE, [FAX], message)
    assert final_reply(result).startswith("550 5.6.0 no attachment and no text"), result
    assert callfiles(milter) == [] and job_rows(milter) == []


def test_cover_body_and_pdf(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    policy = POLICY.replace("body: when_no_attachment", "body: always\n  cover: always")
    milter, postfix = start(start_milter, make_postfix, policy)
    message = signed(
        dkim_keys["example.jp"],
        FAX,
        subject="会議資料",
        subject_charset="iso-2022-jp",
        body=LETTER,
        body_charset="iso-2022-jp",
        attachments=[Attachment(make_pdf(2, text="ATTACHED"), filename="a.pdf")],
    )
    result = postfix.send(ALICE, [FAX], message)
    assert final_reply(result).startswith("250"), result
    _, pages = the_fax(milter)
    # 1 cover sheet + 1 page of the mail's text + the PDF's 2 pages
    assert len(pages) == 4
    assert job_rows(milter, "pages, state") == [(4, "queued")]
    assert "pages=4 added=cover,text" in milter.log()
    cover, text = ocr(pages[0]), ocr(pages[1])
    assert "FAX送付状" in cover and "山田太郎" in cover and "会議資料" in cover, cover
    assert "送付状を含め4枚" in cover, cover
    assert "会議資料をお送りします" in text, text
    assert "ATTACHED" in ocr(pages[2]).upper()


def test_preview_mails_the_pages_and_dials_nothing(
    start_milter: StartMilter,
    make_postfix: MakePostfix,
    dkim_keys: dict[str, Signer],
    tmp_path: Path,
) -> None:
    milter, postfix = start(start_milter, make_postfix, POLICY)
    preview = FAX.replace("fax+", "fax+preview+")
    message = signed(
        dkim_keys["example.jp"],
        preview,
        subject="check",
        body=LETTER,
        attachments=[Attachment(make_pdf(2), filename="a.pdf")],
    )
    result = postfix.send(ALICE, [preview], message)
    assert final_reply(result).startswith("250"), result
    # one row, counted by the rate limits: a preview, never queued nor dialled
    assert callfiles(milter, timeout=2) == [] and previewed_only(milter) == 1
    assert list((spool_dir(milter) / "fax").iterdir()) == []
    assert "preview queue_id=" in milter.log()
    # spooled before the 250; the relay was unreachable, so notify's retry hands it over
    settings = {
        **milter.settings,
        "mail": {"transport": "smtp", "host": "127.0.0.1", "port": postfix.port},
        "notify": {"log_file": str(tmp_path / "notify.log")},
    }
    settings_path = tmp_path / "settings.yaml"
    settings_path.write_text(yaml.safe_dump(settings, allow_unicode=True))
    retry = subprocess.run(
        [str(BIN / "faxmail-notify"), f"--settings={settings_path}", "retry"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert retry.returncode == 0, retry.stderr + (tmp_path / "notify.log").read_text()
    (raw,) = postfix.wait_for_delivery(ALICE)
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(mail, email.message.EmailMessage)
    assert "プレビュー" in str(mail["Subject"]) and "check" in str(mail["Subject"])
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    pdf = attachment.get_content()
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF")
    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as document:
        assert len(document.pages) == 2  # the PDF's 2 pages (it has an attachment: no text page)
    body = mail.get_body(("plain",))
    assert body is not None and "送信されていません" in body.get_content()
    assert callfiles(milter, timeout=0) == [] and previewed_only(milter) == 1


def previewed_only(milter: MilterProcess) -> int:
    """How many job rows the store has, all of them previews (else the test fails)."""
    states = [state for (state,) in job_rows(milter, "state")]
    assert set(states) <= {"previewed"}, states
    return len(states)


def test_previews_use_up_the_rate_limit(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    policy = POLICY.replace("limits: {max_pages: 12}", "limits: {max_pages: 12, per_hour: 2}")
    milter, postfix = start(start_milter, make_postfix, policy)
    signer = dkim_keys["example.jp"]
    preview = FAX.replace("fax+", "fax+preview+")
    for n in range(2):
        result = postfix.send(ALICE, [preview], signed(signer, preview, subject=f"p{n}", body="x"))
        assert final_reply(result).startswith("250"), result
    assert previewed_only(milter) == 2
    over = "4.7.1 <alice@example.jp> has sent 2 faxes in the last hour; try again later"
    # at RCPT (the envelope sender is the author) for the next preview and the next fax
    for address in (preview, FAX):
        result = postfix.send(ALICE, [address], signed(signer, address, body="x"))
        refused = result.rcpts[address]
        assert (refused.code, refused.text) == (450, over), result
    # at the end of the mail (the authenticated author counts, whatever the envelope says)
    for address in (preview, FAX):
        result = postfix.send("news@example.jp", [address], signed(signer, address, body="x"))
        assert final_reply(result) == "450 " + over, result
    assert callfiles(milter, timeout=2) == [] and previewed_only(milter) == 2


def test_preview_is_refused_like_a_fax(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = start(start_milter, make_postfix, POLICY)
    premium = "fax+preview+0990123456@example.jp"
    result = postfix.send(ALICE, [premium], signed(dkim_keys["example.jp"], premium, body="x"))
    refused = result.rcpts[premium]  # at RCPT, as for fax+0990123456@
    assert (refused.code, refused.text) == (
        550,
        "5.7.1 fax number +81990123456 is not allowed (premium rate)",
    )
    preview = FAX.replace("fax+", "fax+preview+")
    unsigned = build_message(from_addr=ALICE, to=[preview], body=LETTER)
    result = postfix.send(ALICE, [preview], unsigned)
    assert final_reply(result).startswith("550 5.7.20"), result
    too_long = signed(
        dkim_keys["example.jp"], preview, attachments=[Attachment(make_pdf(13), filename="l.pdf")]
    )
    result = postfix.send(ALICE, [preview], too_long)
    assert final_reply(result).startswith("552 5.3.4"), result
    spool = Path(milter.settings["state_dir"]) / "notify-spool"
    assert not spool.exists() or not [p for p in spool.iterdir() if not p.name.startswith(".")]
