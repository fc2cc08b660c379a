"""What a fax holds besides its attachments: the mail's text and the cover sheet (policy fax.body,
fax.cover), decided from typed values; the pages themselves are drawn by render/cover.py.

    body never               the text is never a page: no attachment → 550, as before
    body when_no_attachment  no attachment → the text is the fax
    body always              the text's pages come first, then the attachments
    cover always             a cover sheet first; it carries the text when the text has no
                             pages of its own (continued on text pages when it is long)
"""

from __future__ import annotations

import email.message
import logging
from collections.abc import Sequence
from datetime import datetime

from faxmail.core.contentpolicy import read_cover_template
from faxmail.core.covertemplate import (
    DEFAULT_TEMPLATES,
    TemplateError,
    TemplateLine,
    parse_template,
)
from faxmail.core.documents import Document
from faxmail.core.policy import Fax, Sender
from faxmail.core.replies import LOCAL_ERROR, NO_TEXT_TO_FAX, NOTHING_TO_FAX, Refusal
from faxmail.outbound.bodytext import mail_text
from faxmail.outbound.facts import MessageFacts
from faxmail.outbound.recipient import FaxRecipient
from faxmail.render.cover import FrontMatter

log = logging.getLogger("faxmail.content")


def documents_required(fax: Fax) -> bool:
    """Must the mail have an attachment? Only when its text may never be the fax."""
    return fax.body == "never"


def front_matter(
    fax: Fax,
    message: email.message.Message,
    documents: Sequence[Document],
    *,
    facts: MessageFacts,
    author: str,
    entry: Sender,
    language: str,
    recipients: Sequence[FaxRecipient],
    now: datetime,
) -> FrontMatter:
    """The cover sheet and text pages this mail gets; Refusal when there is nothing to fax."""
    wants_text = fax.body != "never" or fax.cover == "always"
    text = mail_text(message) if wants_text else ""
    own_pages = fax.body == "always" or (fax.body == "when_no_attachment" and not documents)
    if not documents:
        if fax.body == "never":
            raise Refusal(NOTHING_TO_FAX)
        if not text.strip():
            raise Refusal(NO_TEXT_TO_FAX.format(policy=fax.body))
    body = text if own_pages else ""
    if fax.cover == "none":
        return FrontMatter(body=body)
    fields = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "to_number": ", ".join(dict.fromkeys(r.number.given for r in recipients)),
        "sender_name": facts.from_name or entry.name or "",
        "sender_company": entry.company or "",
        "sender_address": author,
        "subject": facts.subject,
    }
    cover_text = "" if own_pages else text
    return FrontMatter(
        cover=_template(fax, language), fields=fields, cover_text=cover_text, body=body
    )


def _template(fax: Fax, language: str) -> tuple[TemplateLine, ...]:
    if fax.cover_template is None:
        return parse_template(DEFAULT_TEMPLATES.get(language, DEFAULT_TEMPLATES["en"]))
    try:
        return parse_template(read_cover_template(fax.cover_template))
    except (ValueError, TemplateError) as exc:  # checked at load; changed on disk since
        log.error("fax.cover_template %s cannot be used: %s", fax.cover_template, exc)
        raise Refusal(LOCAL_ERROR) from exc


def describe(front: FrontMatter) -> dict[str, object]:
    """For dry-run and the log: what faxmail adds in front of the attachments."""
    return {"cover": front.cover is not None, "body_pages": bool(front.body)}
