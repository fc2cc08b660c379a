"""Deliver spooled mails: build the message if needed, hand it over, clean up — at least once.

Every mail goes through here, whether it was made a millisecond ago or is retried by
`faxmail-notify retry`: spool entry first, then hand-over, then (and only then) the received
TIFF is deleted. A crash after the hand-over but before the entry is retired sends the same
message (same Message-ID) once more; nothing is ever lost.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from faxmail.notify.environment import Context
from faxmail.notify.messages import AddressError
from faxmail.notify.outbox import Entry
from faxmail.notify.transport import HandoverFailed, hand_over

log = logging.getLogger("faxmail_notify.deliver")

Outcome = Literal["delivered", "pending", "busy"]


class BuildError(Exception):
    """The message cannot be made now (e.g. the job is gone); the entry stays spooled."""


def new_meta(kind: str, ref: str, sender: str, to: list[str], cc: list[str]) -> dict[str, Any]:
    return {
        "kind": kind,  # result | received | mail
        "ref": ref,  # job id, call id, or random
        "sender": sender,
        "to": to,
        "cc": cc,
        "recipients": list(dict.fromkeys(to + cc)),  # still to deliver to
        "refused": {},  # recipient → 5xx reply
        "remove_after": [],  # files to delete once delivered
        "created": time.time(),
        "tries": 0,
        "last_error": None,
    }


def _build(ctx: Context, entry: Entry) -> bytes:
    # Imported here: both builders use this module to spool what they make.
    kind = entry.meta["kind"]
    if kind == "result":
        from faxmail.notify.results import build_result

        return build_result(ctx, entry)
    if kind == "received":
        from faxmail.notify.received import build_received

        return build_received(ctx, entry)
    raise BuildError(f"spool entry {entry.name} of kind {kind!r} has no message")


def deliver(ctx: Context, name: str) -> Outcome:
    with ctx.spool.claim(name) as entry:
        if entry is None:
            return "busy"  # another process is delivering it (or just did)
        return _deliver(ctx, entry)


def _deliver(ctx: Context, entry: Entry) -> Outcome:
    meta = entry.meta
    if not meta["recipients"] and meta["kind"] == "received" and not entry.message.exists():
        from faxmail.notify.received import reroute  # see _build

        reroute(ctx, entry)  # the admin may have added a route since
    if not meta["recipients"]:
        return _failed(ctx, entry, "no recipient: set inbound.default (or a route) in the policy")
    if not entry.message.exists():
        try:
            ctx.spool.save_message(entry, _build(ctx, entry))
        except (BuildError, AddressError) as exc:
            return _failed(ctx, entry, f"cannot build the message: {exc}")
        meta = entry.meta  # the builder may have added to it (remove_after, smtputf8)
        ctx.spool.save_meta(entry)
    try:
        result = hand_over(
            ctx.settings.mail,
            meta["sender"],
            meta["recipients"],
            entry.message.read_bytes(),
            smtputf8=bool(meta.get("smtputf8")),
        )
    except HandoverFailed as exc:
        return _failed(ctx, entry, str(exc))
    for rcpt, reply in result.refused.items():
        log.error("%s: %s refused permanently: %s", entry.name, rcpt, reply)
    meta["refused"].update(result.refused)
    delivered_to = [r for r in meta["recipients"] if r in result.accepted]
    meta["delivered_to"] = meta.get("delivered_to", []) + delivered_to
    if result.deferred:
        meta["recipients"] = list(result.deferred)
        return _failed(ctx, entry, f"recipients deferred: {result.deferred}")
    if not meta["delivered_to"]:
        # Nobody could take it: keep it (a received fax must not vanish) and say so.
        return _failed(ctx, entry, f"every recipient refused it: {result.refused}")
    log.info("%s: handed over for %s", entry.name, ", ".join(meta["delivered_to"]))
    with ctx.spool.guard():
        _record_delivery(ctx, meta)
        ctx.spool.retire(entry)
    finish(entry)
    return "delivered"


def _failed(ctx: Context, entry: Entry, why: str) -> Outcome:
    entry.meta["tries"] += 1
    entry.meta["last_error"] = why
    ctx.spool.save_meta(entry)
    log.warning("%s: kept in the spool (try %d): %s", entry.name, entry.meta["tries"], why)
    return "pending"


def _record_delivery(ctx: Context, meta: dict[str, Any]) -> None:
    if meta["kind"] == "result":
        ctx.store.result_delivered(meta["ref"])
    elif meta["kind"] == "received":
        ctx.store.inbound_delivered(meta["ref"])


def finish(entry: Entry) -> None:
    """After delivery: delete what the entry says (the received TIFF), then the entry."""
    for name in entry.meta.get("remove_after", []):
        Path(name).unlink(missing_ok=True)
    shutil.rmtree(entry.path, ignore_errors=True)


def deliver_all(ctx: Context) -> list[str]:
    """One pass over the whole spool; returns the names still waiting."""
    ctx.spool.sweep_temporary()
    for entry in ctx.spool.retired():
        finish(entry)  # a crash interrupted the clean-up after delivery
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
    from faxmail.notify.results import spool_result

    for job_id in ctx.store.pending_results():
        spool_result(ctx, job_id)
