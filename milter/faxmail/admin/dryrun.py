"""`faxmail dry-run`: the milter's decision on a message file, through the same Gateway."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from faxmail.core.replies import Refusal, Reply
from faxmail.core.session import Session, parse_ip
from faxmail.core.settings import load_settings
from faxmail.daemon.runtime import build_runtime
from faxmail.outbound.recipient import FaxRecipient

ACCEPTED = Reply("250", "2.0.0", "fax queued")
_ADDED = {"cover": "cover sheet", "text": "the mail's text"}


def _entry(stage: str, address: str | None, reply: Reply) -> dict[str, Any]:
    return {
        "stage": stage,
        "address": address,
        "code": reply.code,
        "enhanced": reply.enhanced,
        "text": reply.text,
    }


def run_dry(
    raw: bytes,
    *,
    settings_path: Path | None,
    policy_path: Path | None,
    mail_from: str,
    rcpts: list[str],
    sasl_user: str | None,
    client_ip: str | None,
) -> dict[str, Any]:
    settings = load_settings(settings_path)
    if policy_path is not None:
        settings = settings.model_copy(update={"policy": policy_path})
    runtime = build_runtime(settings, mode="dry-run")
    try:
        session = Session(mail_from, parse_ip(client_ip), sasl_user)
        answers: list[dict[str, Any]] = []
        fax: list[FaxRecipient] = []
        for address in rcpts:
            try:
                recipient = runtime.gateway.check_recipient(session, address)
            except Refusal as refusal:
                answers.append(_entry("RCPT", address, refusal.reply))
                continue
            answers.append(_entry("RCPT", address, Reply("250", "2.1.5", "ok")))
            if recipient is not None:
                fax.append(recipient)
        accepted = False
        details: dict[str, Any] = {}
        if fax:
            try:
                queued = runtime.gateway.decide(session, fax, io.BytesIO(raw))
            except Refusal as refusal:
                answers.append(_entry("DATA", None, refusal.reply))
            else:
                accepted = True
                answers.append(_entry("DATA", None, ACCEPTED))
                details = {
                    "sender": queued.identity.author,
                    "proof": queued.identity.proof,
                    "dkim_domain": queued.identity.dkim.domain if queued.identity.dkim else None,
                    "pages": queued.pages,
                    # the cover sheet and the mail's text count as pages like the attachments
                    "pages_added": queued.added_pages,
                    "added": ", ".join(_ADDED[name] for name in queued.added) or "nothing",
                    "previews": ", ".join(queued.previews) or "none",
                    "subject": queued.facts.subject,
                }
        else:
            answers.append(_entry("DATA", None, Reply("250", "2.0.0", "no fax recipient")))
    finally:
        runtime.close()
    lines = [
        f"{a['stage']}{' ' + a['address'] if a['address'] else ''}: "
        f"{a['code']} {a['enhanced']} {a['text']}"
        for a in answers
    ]
    lines += [f"  {k}: {v}" for k, v in details.items()]
    return {"accepted": accepted, "answers": answers, "details": details, "lines": lines}
