"""`faxmail-notify mail`: the seed's sendmail.py, for dialplans written for it.

    sendmail.py TOADDR -f FROM -a FILE... -s SUBJECT -b BODY -c CC

takes the same arguments, so an installation switches by changing one path: TIFF attachments
become PDF, `\\n` in BODY becomes a line break, and the mail goes through the notify spool
(kept and retried when the relay is down).

Why the job-based subcommands (sent, unanswered, received) are safer: a dialplan written for
this interface puts the mail's Subject and Reply-To and the caller's id into the System()
command line, and /bin/sh interprets them before we are even started — quotes do not help
(`$(...)` and backticks run inside double quotes, and System() decodes backslash escapes
first). No check here can undo that. The job-based subcommands get only FILTER()ed tokens and
look everything else up in the job store.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from pathlib import Path

from faxmail.core.headertext import decode_header_text
from faxmail.notify.args import Refused
from faxmail.notify.convert import fax_to_pdf
from faxmail.notify.entry import new_meta
from faxmail.notify.environment import Context
from faxmail.notify.messages import AddressError, Part, compose, mailbox

_ESCAPES = {"n": "\n", "t": "\t", "r": "", "\\": "\\"}


class MissingFile(Exception):
    """An attachment that does not exist or cannot be read (exit 66, EX_NOINPUT)."""


def expand_escapes(body: str) -> str:
    """The seed's `\\n` (and `\\t`, `\\\\`) escapes; anything else stays as written."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], body)


def _addresses(value: str | None, what: str) -> list[str]:
    if not value:
        return []
    try:
        return [mailbox(part.strip()).addr_spec for part in value.split(",") if part.strip()]
    except AddressError as exc:
        raise Refused(f"{what}: {exc}") from exc


def _attachment(path: Path) -> Part:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MissingFile(f"attachment {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() in (".tif", ".tiff"):
        converted = fax_to_pdf(path, preview_width=100)
        if converted.pdf is not None:
            return Part(converted.pdf, "application/pdf", f"{path.stem}.pdf")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Part(data, kind, path.name)


def seed_mail(
    ctx: Context,
    to: str,
    *,
    sender: str | None,
    cc: str | None,
    subject: str,
    body: str,
    attachments: list[Path],
) -> str:
    """Build the mail and spool it; return the entry's name (deliver it next)."""
    recipients = _addresses(to, "TOADDR")
    if not recipients:
        raise Refused("TOADDR: no address given")
    copies = _addresses(cc, "-c")
    try:
        author = sender or ctx.from_header
        envelope = mailbox(author).addr_spec
    except AddressError as exc:
        raise Refused(f"-f: {exc}") from exc
    built = compose(
        sender=author,
        to=recipients,
        cc=copies,
        subject=decode_header_text(subject) or "(no subject)",
        text=expand_escapes(body),
        attachments=[_attachment(path) for path in attachments],
    )
    name = f"mail-{secrets.token_hex(8)}"
    meta = new_meta("mail", name, envelope, recipients, copies).with_message(built)
    ctx.spool.create(name, meta, built.data)
    return name
