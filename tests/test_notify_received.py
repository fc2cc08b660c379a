"""Received faxes: the receive context's h extension, run through /bin/sh like System(), and
the mails a real Postfix delivers — routed by DID, lossless PDF, preview, nothing lost."""

from __future__ import annotations

import io
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pikepdf
import pytest
from PIL import Image, ImageChops

from conftest import attach_log
from infra.net import free_port
from infra.postfix import PostfixInstance
from test_notify_support import NotifyEnv, attachments, body_text, fax_tiff, parse

pytestmark = pytest.mark.postfix

ROUTED = ("sales@example.jp", "boss@other.example")  # the policy's route for 0312345678
DEFAULT = "fax-inbox@example.jp"


@pytest.fixture
def env(request: pytest.FixtureRequest, workdir: Path, postfix: PostfixInstance) -> NotifyEnv:
    notify_env = NotifyEnv(workdir, postfix.port)
    attach_log(request, "faxmail-notify log", notify_env.log)
    return notify_env


def reception(call: str = "1795698600.17", **changes: str) -> dict[str, str]:
    """Channel variables of the receive context's h extension after ReceiveFAX."""
    values = {
        "UNIQUEID": call,
        "FAXMAIL_FILE": f"{call}.tif",  # as the dialplan sets it
        "FAXMAIL_DID": "0312345678",
        "CALLERID(num)": "0398765432",
        "CALLERID(name)": "ACME 商事",
        "FAXSTATUS": "SUCCESS",
        "FAXSTATUSSTRING": "OK",
        "FAXERROR": "",
        "FAXPAGES": "3",
        "FAXBITRATE": "9600",
        "FAXRESOLUTION": "8031x7700",
        "FAXMODE": "audio",
        "REMOTESTATIONID": "+81 3 9876 5432",
    }
    values.update(changes)
    return values


def receive(env: NotifyEnv, channel: dict[str, str]) -> int:
    return env.dialplan.run("faxmail-receive", "h", channel).code


def tiff_pages(path: Path) -> list[Image.Image]:
    pages = []
    with Image.open(path) as tiff:
        for index in range(getattr(tiff, "n_frames", 1)):
            tiff.seek(index)
            page = tiff.convert("L")
            page.info["dpi"] = tuple(float(v) for v in tiff.info["dpi"])
            pages.append(page)
    return pages


def render_page(pdf: bytes, number: int, dpi: tuple[float, float]) -> Image.Image:
    """Page `number` of `pdf` rendered by Ghostscript at the fax page's own resolution."""
    with tempfile.TemporaryDirectory(prefix="fxm-render-") as tmp:
        source, out = Path(tmp) / "in.pdf", Path(tmp) / "out.pbm"
        source.write_bytes(pdf)
        subprocess.run(
            ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=pbmraw",
             f"-r{dpi[0]:g}x{dpi[1]:g}", f"-dFirstPage={number}", f"-dLastPage={number}",
             f"-sOutputFile={out}", str(source)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        with Image.open(out) as image:
            return image.convert("L")


def test_fax_to_each_routed_address_lossless_with_preview(
    env: NotifyEnv, postfix: PostfixInstance
) -> None:
    tiff = fax_tiff(env.inbox / "1795698600.17.tif", ["fine", "standard", "fine"])
    originals = tiff_pages(tiff)
    assert receive(env, reception()) == 0
    mails = {address: postfix.wait_for_delivery(address) for address in ROUTED}
    assert [len(m) for m in mails.values()] == [1, 1]
    assert postfix.messages(DEFAULT) == []
    mail = parse(mails[ROUTED[0]][0])
    assert mail["Subject"] == 'FAX受信: 0398765432 "ACME 商事" (3枚)'
    assert mail["Auto-Submitted"] == "auto-generated"
    text = body_text(mail)
    for fact in ("0312345678", "+81 3 9876 5432", "PDF 3 ページ", "9600 bit/s", "音声 (G.711)"):
        assert fact in text, text
    # multipart/alternative: text, and HTML showing page 1 from an inline PNG (cid:)
    html_part = mail.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    (png_part,) = [p for p in mail.walk() if p.get_content_type() == "image/png"]
    assert f'src="cid:{png_part["Content-ID"].strip("<>")}"' in html
    png = png_part.get_payload(decode=True)
    assert isinstance(png, bytes)
    with Image.open(io.BytesIO(png)) as preview:
        assert preview.width == 400 and abs(preview.height - 552) <= 1  # square pixels
    # The PDF: one page per fax page, the fax's own pixels, the fax page's physical size.
    (pdf,) = attachments(mail).values()
    document = pikepdf.open(io.BytesIO(pdf))
    assert len(document.pages) == 3
    for number, (page, original) in enumerate(zip(document.pages, originals, strict=True), 1):
        box = [float(v) for v in page.mediabox]
        width_mm, height_mm = (box[2] - box[0]) / 72 * 25.4, (box[3] - box[1]) / 72 * 25.4
        assert abs(width_mm - 215.1) < 0.5 and abs(height_mm - 297.0) < 0.5, (number, box)
        rendered = render_page(pdf, number, original.info["dpi"])
        assert rendered.size == original.size
        assert ImageChops.difference(rendered, original).getbbox() is None, f"page {number}"
    # Delivered: the received TIFF is gone, and so is the spool entry.
    assert not tiff.exists()
    assert env.spooled() == []
    assert env.query("SELECT delivered IS NOT NULL FROM inbound") == [(1,)]


def test_routes_by_did(env: NotifyEnv, postfix: PostfixInstance) -> None:
    cases = [("10.1", "+81312345678", ROUTED), ("10.2", "0661234567", (DEFAULT,))]
    cases.append(("10.3", "", (DEFAULT,)))  # trunk without a DID
    for call, did, _ in cases:
        fax_tiff(env.inbox / f"{call}.tif")
        assert receive(env, reception(call, FAXMAIL_DID=did, FAXPAGES="1")) == 0
    postfix.wait_for_empty_queue()
    assert len(postfix.messages(ROUTED[0])) == 1
    assert len(postfix.messages(ROUTED[1])) == 1
    assert len(postfix.messages(DEFAULT)) == 2


def test_failed_and_partial_receptions_are_mailed(env: NotifyEnv, postfix: PostfixInstance) -> None:
    # Cut off during page 3: pages 1 and 2 are complete.
    whole = fax_tiff(env.root / "whole.tif", ["fine", "fine", "fine"])
    info = subprocess.run(["tiffinfo", str(whole)], capture_output=True, text=True).stdout
    third = [int(n) for n in re.findall(r"TIFF Directory at offset \S+ \((\d+)\)", info)][2]
    (env.inbox / "20.1.tif").write_bytes(whole.read_bytes()[: third - 200])
    cut_off = {"FAXSTATUS": "FAILED", "FAXERROR": "RX_TIMEOUT", "FAXSTATUSSTRING": "T.30 timeout"}
    assert receive(env, reception("20.1", **cut_off)) == 0
    (raw,) = postfix.wait_for_delivery(ROUTED[0])
    mail = parse(raw)
    assert mail["Subject"].startswith("[FAILED] FAX受信: 0398765432")
    assert "(2枚)" in mail["Subject"]
    text = body_text(mail)
    assert "RX_TIMEOUT" in text and "T.30 timeout" in text and "2 complete page(s)" in text
    (pdf,) = attachments(mail).values()
    assert len(pikepdf.open(io.BytesIO(pdf)).pages) == 2
    # The line dropped before any page: mailed too, with no attachment.
    silent = {"FAXSTATUS": "FAILED", "FAXERROR": "NO_FAX", "FAXPAGES": "0", "REMOTESTATIONID": ""}
    assert receive(env, reception("20.2", **silent)) == 0
    (_, raw) = postfix.wait_for_delivery(ROUTED[0], 2)
    mail = parse(raw)
    assert mail["Subject"] == '[FAILED] FAX受信: 0398765432 "ACME 商事" (0枚)'
    assert attachments(mail) == {}
    assert "NO_FAX" in body_text(mail)


def test_relay_down_spooled_then_retry_delivers_once(
    env: NotifyEnv, postfix: PostfixInstance
) -> None:
    env.write_settings(port=free_port())  # the relay is down
    tiff = fax_tiff(env.inbox / "30.1.tif", ["standard"])
    assert receive(env, reception("30.1", FAXPAGES="1")) == 75  # EX_TEMPFAIL: spooled
    assert env.spooled() == ["in-30.1"]
    assert tiff.exists()
    assert env.notify("retry").code == 75  # still down
    assert tiff.exists()
    env.write_settings(port=postfix.port)
    assert env.notify("retry").code == 0
    for address in ROUTED:
        assert len(postfix.wait_for_delivery(address)) == 1
    assert not tiff.exists()
    assert env.spooled() == []
    assert env.notify("retry").code == 0
    postfix.wait_for_empty_queue()
    assert [len(postfix.messages(a)) for a in ROUTED] == [1, 1]


def test_concurrent_retries_deliver_each_fax_once(env: NotifyEnv, postfix: PostfixInstance) -> None:
    env.write_settings(port=free_port())
    calls = [f"40.{n}" for n in range(4)]
    for call in calls:
        fax_tiff(env.inbox / f"{call}.tif")
        assert receive(env, reception(call, FAXMAIL_DID="0661234567", FAXPAGES="1")) == 75
    env.write_settings(port=postfix.port)
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: env.notify("retry").code, range(4)))
    assert set(codes) <= {0, 75}  # 75: another run was delivering an entry at that moment
    assert env.notify("retry").code == 0
    postfix.wait_for_empty_queue()
    assert len(postfix.messages(DEFAULT)) == len(calls)
    assert env.spooled() == []
