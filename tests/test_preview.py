"""notify/preview.py: the preview mail, built and spooled (no relay needed); dry-run."""

from __future__ import annotations

import email
import email.message
import email.policy
import io
import subprocess
import sys
from pathlib import Path

import pikepdf
import yaml

from faxmail.core.policy import Policy
from faxmail.core.settings import Settings
from faxmail.notify.environment import Context
from faxmail.notify.outbox import NotifySpool
from faxmail.notify.preview import spool_preview
from faxmail.outbound.preview import PreviewRequest
from faxmail.render.cover import FrontMatter
from faxmail.render.options import RenderOptions
from faxmail.render.renderer import Renderer
from faxmail.store.sqlite import SqliteStore
from infra.constants import FAX_DIGITS
from infra.dkimkeys import Signer
from infra.dns import DnsServer
from infra.mail import Attachment, build_message
from infra.pdfs import make_pdf

BIN = Path(sys.executable).parent


def test_preview_mail_holds_the_pages_as_pdf(tmp_path: Path) -> None:
    rendered = Renderer(RenderOptions()).render(
        [], tmp_path, FrontMatter(body="\n".join(f"line {n}" for n in range(60)))
    )
    assert rendered.pages == 2 and rendered.front_pages == 2
    settings = Settings.model_validate({"state_dir": str(tmp_path / "state")})
    policy = Policy.model_validate({"notify": {"from_address": "FAX <fax-gw@example.jp>"}})
    store = SqliteStore(tmp_path / "state.sqlite")
    ctx = Context(settings, policy, store, NotifySpool(settings.notify_spool))
    request = PreviewRequest("alice@example.jp", ("03-1234-5678",), "件名", 2, rendered.tiff, "en")
    name = spool_preview(ctx, request)
    meta = ctx.spool.read(name)
    assert meta is not None and meta.kind == "mail" and meta.to == ("alice@example.jp",)
    raw = (settings.notify_spool / name / "message.eml").read_bytes()
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(mail, email.message.EmailMessage)
    assert str(mail["Subject"]) == "Fax preview (not sent): 件名"
    assert str(mail["To"]) == "alice@example.jp"
    (attachment,) = list(mail.iter_attachments())
    pdf = attachment.get_content()
    assert isinstance(pdf, bytes)
    with pikepdf.open(io.BytesIO(pdf)) as document:
        assert len(document.pages) == 2
    body = mail.get_body(("plain",))
    assert body is not None and "NOT been sent" in body.get_content()
    store.close()


def test_dry_run_shows_cover_and_text_pages(
    tmp_path: Path, dns: DnsServer, dkim_keys: dict[str, Signer]
) -> None:
    spool = tmp_path / "asterisk"
    for sub in ("outgoing", "faxmail-staging", "fax"):
        (spool / sub).mkdir(parents=True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        'fax_address: {domains: [example.jp]}\nsenders:\n  - address: "@example.jp"\n'
        "fax: {body: always, cover: always}\n"
    )
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "policy": str(policy),
                "state_dir": str(tmp_path / "state"),
                "dns": {"nameservers": [dns.host], "port": dns.port, "timeout": 2},
                "asterisk": {"spool_dir": str(spool), "user": None},
            }
        )
    )
    preview = FAX_DIGITS.replace("fax+", "fax+preview+")
    message = build_message(
        from_addr="alice@example.jp",
        to=[FAX_DIGITS, preview],
        body="Please fax this.\n",
        attachments=[Attachment(make_pdf(2), filename="a.pdf")],
    )
    mail = tmp_path / "signed.eml"
    mail.write_bytes(dkim_keys["example.jp"].sign(message))
    argv = [str(BIN / "faxmail"), "dry-run", "--settings", str(settings), str(mail)]
    argv += ["--mail-from", "alice@example.jp", "--rcpt", FAX_DIGITS, "--rcpt", preview]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pages: 4" in result.stdout  # cover + text + 2 PDF pages
    assert "pages_added: 2" in result.stdout
    assert "added: cover sheet, the mail's text" in result.stdout
    assert f"previews: {preview}" in result.stdout
    assert not list((spool / "outgoing").iterdir())
