"""DKIM signatures that leave To:/Cc: unsigned (policy `unsigned_recipients`): the replay guard.

Such a signature does not say the mail was meant for the fax gateway: whoever holds a copy of a
genuine signed mail could re-send it to a fax address. With the setting on, it is accepted only if

- its signed Date: is at most `unsigned_recipients_max_age_minutes` old at arrival, and not more
  than FUTURE_SLACK_S ahead of our clock;
- its Message-ID is signed; that Message-ID is then faxed within one SMTP transaction only
  (`faxed_once`, claimed in the job store, so across restarts too);
- every fax address is at least in an (unsigned) To: or Cc: field.

README.md ("Signers that leave To:/Cc: unsigned") names the risk that remains.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from faxmail.core.replies import LOCAL_ERROR, MESSAGE_ID_FAXED, Refusal
from faxmail.store.errors import StoreUnavailable
from faxmail.store.interface import MessageIdClaims

log = logging.getLogger("faxmail.dkim")

FUTURE_SLACK_S = 5 * 60  # clocks differ a little; a Date far ahead would stretch the window

Header = tuple[bytes, bytes]  # (name, value) as dkimpy holds them


@dataclass(frozen=True)
class ReplayGuard:
    max_age_s: float
    now: float  # when the mail arrived


@dataclass(frozen=True)
class Unguarded:
    """Why a signature without signed recipients does not vouch for the fax."""

    why: str


def _values(headers: Sequence[Header], name: bytes) -> list[str]:
    return [
        " ".join(value.decode("utf-8", "replace").split())
        for field, value in headers
        if field.lower().strip() == name
    ]


def _date_problem(dates: Sequence[str], guard: ReplayGuard) -> str | None:
    if not dates:
        return "Date: is not signed"
    limit = guard.max_age_s / 60
    for text in dates:
        try:
            sent = email.utils.parsedate_to_datetime(text)
            if sent.tzinfo is None:  # "-0000": the time is UTC, the sender's zone unknown
                sent = sent.replace(tzinfo=datetime.UTC)
            age = guard.now - sent.timestamp()
        except (TypeError, ValueError, OverflowError):
            return "the signed Date: cannot be read"
        if age > guard.max_age_s:
            return f"the signed Date: is {age / 60:.0f} minutes old; at most {limit:g} allowed"
        if -age > FUTURE_SLACK_S:
            return f"the signed Date: is {-age / 60:.0f} minutes in the future"
    return None


def single_use_message_id(
    signed: Sequence[Header],
    headers: Sequence[Header],
    fax_addresses: Sequence[str],
    guard: ReplayGuard,
) -> str | Unguarded:
    """The signed Message-ID that may be faxed once, or why the signature does not vouch.

    `signed`: the header fields the signature covers; `headers`: all of the mail's."""
    why = _date_problem(_values(signed, b"date"), guard)
    if why is not None:
        return Unguarded(why)
    # No whitespace: two canonicalisations of one field must give the same key.
    message_ids = {"".join(value.split()) for value in _values(signed, b"message-id")} - {""}
    if not message_ids:
        return Unguarded("Message-ID: is not signed")
    if len(message_ids) > 1:
        return Unguarded("more than one Message-ID: is signed")
    listed = {
        address.lower()
        for value in _values(headers, b"to") + _values(headers, b"cc")
        for _, address in email.utils.getaddresses([value])
    }
    for fax in fax_addresses:
        if fax.lower() not in listed:
            return Unguarded(f"{fax} is in no To: or Cc: field")
    return message_ids.pop()


@contextmanager
def faxed_once(store: MessageIdClaims, message_id: str | None) -> Iterator[None]:
    """Hold this around queueing a mail whose signature left To:/Cc: unsigned.

    `message_id` (None: a fully signed mail, nothing to do) is claimed for this transaction:
    Refusal(MESSAGE_ID_FAXED) if another one claimed it first; given back if queueing fails,
    so that the sender's retry of a refused or deferred mail is not taken for a replay.
    """
    if message_id is None:
        yield
        return
    transaction = uuid.uuid4().hex
    try:
        claimed = store.claim_message_id(message_id, transaction, time.time())
    except StoreUnavailable as exc:
        log.error("cannot claim Message-ID %s in the job store: %s", message_id, exc)
        raise Refusal(LOCAL_ERROR) from exc
    if not claimed:
        log.warning("Message-ID %s was faxed in another SMTP transaction: a replay", message_id)
        raise Refusal(MESSAGE_ID_FAXED.format(message_id=message_id))
    try:
        yield
    except BaseException:
        try:
            store.release_message_id(message_id, transaction)
        except StoreUnavailable as exc:  # the original failure matters more; log this one
            log.error("cannot release Message-ID %s: %s", message_id, exc)
        raise


def check_not_faxed(store: MessageIdClaims, message_id: str | None) -> None:
    """What `faxed_once` would refuse, without claiming anything (faxmail dry-run)."""
    if message_id is not None and store.message_id_claimed(message_id):
        raise Refusal(MESSAGE_ID_FAXED.format(message_id=message_id))
