"""Deliver spooled mails: build the message if needed, hand it over, clean up — at least once.

Every mail goes through here, whether it was made a millisecond ago or is retried by
`faxmail-notify retry`: spool entry first, then hand-over, then (and only then) the received
TIFF is deleted. A crash after the hand-over but before the entry is retired sends the same
message (same Message-ID) once more; nothing is ever lost.
"""

from __future__ import annotations

import email.policy
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import replace
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Literal

from faxmail.notify.entry import BuildError, BuiltMail, Kind, MailMeta
from faxmail.notify.environment import Context
from faxmail.notify.messages import AddressError, mailbox
from faxmail.notify.outbox import Entry
from faxmail.notify.received import build_received, reroute
from faxmail.notify.results import build_result, spool_result
from faxmail.notify.transport import HandoverFailed, hand_over

log = logging.getLogger("faxmail_notify.deliver")

Outcome = Literal["delivered", "pending", "busy"]

# How each kind's message is made; a "mail" entry is spooled with its message.
_BUILDERS: dict[Kind, Callable[[Context, MailMeta], BuiltMail]] = {
    "result": build_result,
    "received": build_received,
}


def _build(ctx: Context, entry: Entry) -> BuiltMail:
    builder = _BUILDERS.get(entry.meta.kind)
    if builder is None:
        raise BuildError(f"spool entry {entry.name} of kind {entry.meta.kind!r} has no message")
    return builder(ctx, entry.meta)


def deliver(ctx: Context, name: str) -> Outcome:
    with ctx.spool.claim(name) as entry:
        if entry is None:
            return "busy"  # another process is delivering it (or just did)
        return _deliver(ctx, entry)


def _deliver(ctx: Context, entry: Entry) -> Outcome:
    if not entry.meta.recipients and entry.meta.kind == "received" and not entry.message.exists():
        entry.meta = reroute(ctx, entry.meta)  # the admin may have added a route since
        ctx.spool.save_meta(entry)
    if not entry.meta.recipients:
        return _failed(ctx, entry, "no recipient: set inbound.default (or a route) in the policy")
    try:
        sender = _sender(ctx, entry.meta)
    except AddressError as exc:
        return _failed(ctx, entry, f"no sender for the mail: {exc}")
    if entry.message.exists() and _from_changed(ctx, entry):
        # Nobody has it yet: rebuilt, so that From: is the one the envelope now names.
        log.info("%s: notify.from_address changed since it was built: rebuilding", entry.name)
        entry.message.unlink()
    if not entry.message.exists():
        try:
            built = _build(ctx, entry)
        except (BuildError, AddressError) as exc:
            return _failed(ctx, entry, f"cannot build the message: {exc}")
        ctx.spool.save_message(entry, built.data)
        entry.meta = built.meta  # with what building added (remove_after, smtputf8)
        ctx.spool.save_meta(entry)
    meta = entry.meta
    try:
        result = hand_over(
            ctx.settings.mail,
            sender,
            meta.recipients,
            entry.message.read_bytes(),
            smtputf8=bool(meta.smtputf8),
        )
    except HandoverFailed as exc:
        return _failed(ctx, entry, str(exc))
    for rcpt, reply in result.refused.items():
        log.error("%s: %s refused permanently: %s", entry.name, rcpt, reply)
    accepted = tuple(r for r in meta.recipients if r in result.accepted)
    delivered_to = (meta.delivered_to or ()) + accepted
    meta = replace(meta, refused={**meta.refused, **result.refused}, delivered_to=delivered_to)
    if result.deferred:
        entry.meta = replace(meta, recipients=tuple(result.deferred))
        return _failed(ctx, entry, f"recipients deferred: {result.deferred}")
    entry.meta = meta
    if not delivered_to:
        # Nobody could take it: keep it (a received fax must not vanish) and say so.
        return _failed(ctx, entry, f"every recipient refused it: {result.refused}")
    log.info("%s: handed over for %s", entry.name, ", ".join(delivered_to))
    with ctx.spool.guard():
        _record_delivery(ctx, meta)
        ctx.spool.retire(entry)
    finish(entry.path, meta.remove_after)
    return "delivered"


def _sender(ctx: Context, meta: MailMeta) -> str:
    """The envelope sender at hand-over time: ours as the policy says now (an entry's own
    `sender` is only what it was when spooled); a seed mail keeps the one it was given."""
    return ctx.envelope_sender if meta.kind in _BUILDERS else meta.sender


def _from_changed(ctx: Context, entry: Entry) -> bool:
    """Whether our built message's From: is no longer the policy's, and nobody has it yet."""
    if entry.meta.kind not in _BUILDERS or entry.meta.delivered_to:
        return False
    head = []
    with entry.message.open("rb") as f:
        for line in f:  # the header only: a received fax's message holds its PDF
            if not line.strip():
                break
            head.append(line)
    headers = BytesHeaderParser(policy=email.policy.default).parsebytes(b"".join(head))
    written = getattr(headers["From"], "addresses", ())
    wanted = mailbox(ctx.from_header)
    return not written or (written[0].addr_spec, written[0].display_name) != (
        wanted.addr_spec,
        wanted.display_name,
    )


def _failed(ctx: Context, entry: Entry, why: str) -> Outcome:
    entry.meta = replace(entry.meta, tries=entry.meta.tries + 1, last_error=why)
    ctx.spool.save_meta(entry)
    log.warning("%s: kept in the spool (try %d): %s", entry.name, entry.meta.tries, why)
    return "pending"


def _record_delivery(ctx: Context, meta: MailMeta) -> None:
    if meta.kind == "result":
        ctx.store.result_delivered(meta.ref)
    elif meta.kind == "received":
        ctx.store.inbound_delivered(meta.ref)


def finish(path: Path, remove_after: Iterable[str]) -> None:
    """After delivery: delete what the entry says (the received TIFF), then the entry."""
    for name in remove_after:
        Path(name).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def deliver_all(ctx: Context) -> list[str]:
    """One pass over the whole spool; returns the names still waiting."""
    ctx.spool.sweep_temporary()
    for retired in ctx.spool.retired():
        finish(retired.path, retired.remove_after)  # a crash interrupted the clean-up
    respool_results(ctx)
    waiting = []
    for name in ctx.spool.names():
        try:
            outcome = deliver(ctx, name)
        except Exception:  # one broken entry must not hold back the others (logged)
            log.exception("%s: delivery failed", name)
            outcome = "pending"
        if outcome != "delivered":
            waiting.append(name)
    return waiting


def respool_results(ctx: Context) -> None:
    """Result mails claimed in the store whose spool entry never got written (a crash)."""
    for job_id in ctx.store.pending_results():
        spool_result(ctx, job_id)
