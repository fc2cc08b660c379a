"""A preview's mail: the rendered pages as PDF, back to the sender, through the outbox.

The decision (outbound/decision.py) hands over a PreviewRequest while the rendered TIFF
still exists; the whole message is built and spooled here before the milter answers 250
(a "mail" entry: its message is in the spool), then handed over. A relay that is down
leaves it in the spool for `faxmail-notify retry`, like every other mail faxmail sends.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import img2pdf

from faxmail.notify.deliver import deliver
from faxmail.notify.entry import new_meta
from faxmail.notify.environment import Context
from faxmail.notify.messages import Part, compose
from faxmail.outbound.preview import PreviewRequest

log = logging.getLogger("faxmail_notify.preview")

WORDS = {
    "en": {
        "subject": "Fax preview (not sent): {subject}",
        "intro": "This is how your fax to {numbers} would look: {pages} page(s), attached as "
        "PDF. It has NOT been sent.\nTo send it, mail it to the fax address without "
        "'preview+'.",
        "no_pdf": "The pages could not be made into a PDF.",
    },
    "ja": {
        "subject": "FAXプレビュー (未送信): {subject}",
        "intro": "{numbers} 宛てのFAXは次のようになります ({pages}ページ、PDFで添付)。"
        "このFAXは送信されていません。\n送信するには、'preview+' を除いたFAXアドレスに"
        "送ってください。",
        "no_pdf": "ページをPDFに変換できませんでした。",
    },
}
FOOTER = {"en": "-- \nfaxmail (automatic message)", "ja": "-- \nfaxmail (自動送信メール)"}


def spool_preview(ctx: Context, request: PreviewRequest) -> str:
    """Build and spool the preview mail; its entry's name (OSError: nothing spooled)."""
    words = WORDS.get(request.language, WORDS["en"])
    pdf = _pdf(request.tiff)
    numbers = ", ".join(request.numbers)
    text = words["intro"].format(numbers=numbers, pages=request.pages)
    attachments = []
    if pdf is not None:
        attachments.append(Part(pdf, "application/pdf", "fax-preview.pdf"))
    else:
        text += "\n" + words["no_pdf"]
    built = compose(
        sender=ctx.from_header,
        to=[request.to],
        subject=words["subject"].format(subject=request.subject or "-"),
        text=f"{text}\n\n{FOOTER.get(request.language, FOOTER['en'])}\n",
        attachments=attachments,
    )
    name = f"preview-{secrets.token_hex(8)}"
    meta = new_meta("mail", name, ctx.envelope_sender, [request.to], []).with_message(built)
    ctx.spool.create(name, meta, built.data)
    log.info("%s: preview of %d page(s) for %s spooled", name, request.pages, request.to)
    return name


def _pdf(tiff: Path) -> bytes | None:
    """The G4 pages wrapped losslessly. img2pdf's own PDF writer: this runs inside the milter,
    where pikepdf (img2pdf's default writer when installed) deadlocked a libmilter thread."""
    try:
        return bytes(img2pdf.convert(str(tiff), engine=img2pdf.Engine.internal))
    except Exception as exc:  # noqa: BLE001 - img2pdf raises a zoo of types; all mean "no PDF"
        log.warning("preview: img2pdf failed on %s: %r", tiff, exc)
        return None


def mail_preview(ctx: Context, request: PreviewRequest) -> None:
    """Spool, then try to hand over; a failed hand-over waits for `faxmail-notify retry`."""
    name = spool_preview(ctx, request)
    try:
        outcome = deliver(ctx, name)
    except Exception:  # spooled: it is sent later; this mail's answer stays 250 (logged)
        log.exception("%s: preview hand-over failed; faxmail-notify retry sends it", name)
        return
    log.info("%s: preview %s", name, outcome)
