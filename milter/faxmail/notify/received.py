"""Received faxes: route by the dialled number, spool first, then build and deliver the mail.

Order, so that nothing is lost: the spool entry (who gets it, which TIFF) is on disk before
anything else happens; the mail is built from it (PDF, preview) and handed over; only then is
the received TIFF deleted (deliver.py). If building or the hand-over fails, the entry and the
TIFF stay and `faxmail-notify retry` tries again.
"""

from __future__ import annotations

import html
import logging
import os
import re
import secrets
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import phonenumbers

from faxmail.core.policy import Inbound
from faxmail.notify.args import Refused
from faxmail.notify.convert import Converted, fax_to_pdf
from faxmail.notify.entry import BuildError, BuiltMail, MailMeta, Received, Reception, new_meta
from faxmail.notify.environment import Context
from faxmail.notify.messages import Part, compose, content_id, mailbox
from faxmail.notify.templates import mode_text, resolution_text, words

log = logging.getLogger("faxmail_notify.received")


def route(inbound: Inbound, region: str, did: str) -> tuple[str, ...]:
    """The mailboxes for `did`: its route, else the default."""
    wanted = _normal(did, region)
    for key, addresses in inbound.routes.items():
        if wanted and _normal(key, region) == wanted:
            return addresses
    return inbound.default


def _normal(number: str, region: str) -> str:
    """E.164 when the number parses (trunks send "0312345678" or "+81312345678"), else digits."""
    if not number:
        return ""
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(number, region), phonenumbers.PhoneNumberFormat.E164
        )
    except phonenumbers.NumberParseException:
        return number


def _inbox_file(ctx: Context, name: str) -> Path | None:
    """The received TIFF; None when ReceiveFAX wrote none. Refused unless a plain file."""
    if not name:
        return None
    path = ctx.settings.notify.inbox_dir / name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        # A symlink could make us mail (and then delete) any file Asterisk's user can read.
        raise Refused(f"{path} is not a regular file")
    return path


def _recipients(ctx: Context, did: str) -> list[str]:
    recipients = list(route(ctx.policy.inbound, ctx.policy.destinations.region, did))
    if not recipients and ctx.policy.admin_cc:
        log.warning("no inbound route for DID %r and no inbound.default: to admin_cc", did)
        recipients = [ctx.policy.admin_cc]
    return recipients


def reroute(ctx: Context, meta: MailMeta) -> MailMeta:
    """A fax spooled without recipients: route it by the policy as it is now."""
    recipients = tuple(_recipients(ctx, meta.received.reception.did if meta.received else ""))
    return replace(meta, to=recipients, recipients=recipients)


def on_received(ctx: Context, rx: Reception) -> str:
    """Spool the received fax; return its entry's name (deliver it next)."""
    tiff = _inbox_file(ctx, rx.tiff_name)
    recipients = _recipients(ctx, rx.did)
    ref = re.sub(r"[^0-9A-Za-z._-]", "", rx.call_id) or secrets.token_hex(8)
    name = f"in-{ref}"
    meta = new_meta("received", ref, ctx.spooled_sender, recipients, [])
    received = Received(rx, str(tiff) if tiff else None, received_at=time.time())
    meta = replace(meta, received=received)
    if received.tiff is not None and not ctx.policy.inbound.keep_tiff:
        meta = replace(meta, remove_after=(received.tiff,))
    if ctx.spool.create(name, meta):
        ctx.store.add_inbound(
            ref,
            did=rx.did,
            caller=rx.caller,
            status=rx.fax.status,
            pages=rx.fax.pages,
            tiff=received.tiff,
            recipients=recipients,
        )
        log.info("fax %s from %r to DID %r spooled for %s", ref, rx.caller, rx.did, recipients)
    else:
        log.info("fax %s was spooled before (a repeated call)", ref)
    return name


def build_received(ctx: Context, meta: MailMeta) -> BuiltMail:
    if meta.received is None:
        raise BuildError(f"received fax {meta.ref} has no reception in its spool entry")
    rx, received_at = meta.received.reception, meta.received.received_at
    fax = rx.fax
    tiff = Path(meta.received.tiff) if meta.received.tiff else None
    converted = None
    if tiff is not None and tiff.is_file():
        converted = fax_to_pdf(tiff, preview_width=ctx.policy.inbound.preview_width)
    text = words(ctx.policy.language)
    pages = converted.pages if converted else 0
    failed = (
        fax.status != "SUCCESS"
        or converted is None
        or converted.problem is not None
        or pages == 0
        or (fax.pages is not None and pages < fax.pages)
    )
    caller = " ".join(p for p in (rx.caller, rx.caller_name and f'"{rx.caller_name}"') if p)
    caller = caller or fax.station or text["unknown_caller"]
    rows = _rows(rx, received_at, pages, converted, ctx.policy.language)
    intro = text["in_failed_intro" if failed else "in_intro"].format(caller=caller)
    attachments, note = _attachments(rx, received_at, tiff, converted, text)
    domain = mailbox(ctx.from_header).domain
    cid = content_id(domain, "preview")
    inline = []
    if converted is not None and converted.preview is not None:
        inline.append(Part(converted.preview, "image/png", "page1.png", cid))
    built = compose(
        sender=ctx.from_header,
        to=meta.to,
        subject=text["in_failed_subject" if failed else "in_subject"].format(
            caller=caller, pages=pages
        ),
        text=_plain(intro, rows, note, text["footer"]),
        html=_html(intro, rows, note, cid if inline else None, text["preview"]),
        inline=inline,
        attachments=attachments,
    )
    return BuiltMail(built.data, meta.with_message(built))


def _rows(
    rx: Reception, received_at: float, pages: int, converted: Converted | None, language: str
) -> list[tuple[str, str]]:
    text = words(language)
    fax = rx.fax
    status = fax.status or "-"
    problems = [p for p in (fax.error, fax.status_string) if p and p not in ("OK", status)]
    if converted is not None and converted.problem:
        problems.append(converted.problem)
    rows = [
        (text["received"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(received_at))),
        (text["did"], rx.did or "-"),
        (text["caller"], " ".join(p for p in (rx.caller, rx.caller_name) if p) or "-"),
        (text["station"], fax.station or "-"),
        (text["pages"], text["in_pages"].format(pages=pages, reported=_dash(fax.pages))),
        (text["status"], status),
        (text["resolution"], resolution_text(language, fax.resolution)),
        (text["bitrate"], f"{fax.bitrate} bit/s" if fax.bitrate else "-"),
        (text["mode"], mode_text(language, fax.mode)),
    ]
    if problems:
        rows.append((text["error"], " / ".join(dict.fromkeys(problems))))
    return rows


def _attachments(
    rx: Reception,
    received_at: float,
    tiff: Path | None,
    converted: Converted | None,
    text: dict[str, str],
) -> tuple[list[Part], str]:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(received_at))
    base = f"fax-{stamp}-{re.sub(r'[^0-9]', '', rx.caller) or 'unknown'}"
    if converted is not None and converted.pdf is not None:
        return [Part(converted.pdf, "application/pdf", f"{base}.pdf")], text["in_attached"]
    if tiff is not None and tiff.is_file() and tiff.stat().st_size > 0:
        # No PDF, but what arrived is still the addressee's: attach it as it is.
        return [Part(tiff.read_bytes(), "image/tiff", f"{base}.tif")], text["in_tiff_attached"]
    return [], text["in_nothing"]


def _plain(intro: str, rows: list[tuple[str, str]], note: str, footer: str) -> str:
    lines = [intro, "", *(f"  {label}: {value}" for label, value in rows), "", note, "", footer]
    return "\n".join(lines) + "\n"


def _html(intro: str, rows: list[tuple[str, str]], note: str, cid: str | None, alt: str) -> str:
    e = html.escape
    cells = "".join(
        f'<tr><th align="left">{e(label)}</th><td>{e(value)}</td></tr>' for label, value in rows
    )
    image = f'<p><img src="cid:{e(cid.strip("<>"))}" alt="{e(alt)}"></p>' if cid else ""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        f"<p>{e(intro)}</p><table>{cells}</table>{image}<p>{e(note)}</p></body></html>\n"
    )


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)
