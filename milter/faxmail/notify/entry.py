"""One mail in the notify spool as its meta.json holds it: who gets it, what is left to do.

meta.json is the entry's only state between runs, and an entry may wait for days and be
delivered by a newer version, so `to_json`/`from_json` keep the keys every version has written
(`new_meta`, plus what building and delivering add). Keys this version does not know are kept
as they are (`extra`); a meta.json that is JSON but not an entry raises `CorruptEntry`, a
ValueError like the JSON errors themselves, so both are handled alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, TypeGuard, get_args

from faxmail.notify.args import FaxReport
from faxmail.notify.messages import Built

Kind = Literal["result", "received", "mail"]  # a job's result, a received fax, a seed mail


class BuildError(Exception):
    """The message cannot be made now (e.g. the job is gone); the entry stays spooled."""


class CorruptEntry(ValueError):
    """A meta.json that is JSON but not a spool entry (a key missing or of the wrong type)."""


@dataclass(frozen=True)
class Reception:
    """The receive context's `h` extension: the call and its fax, checked and decoded."""

    call_id: str  # UNIQUEID
    tiff_name: str  # the file ReceiveFAX wrote, in settings notify.inbox_dir; "" if none
    did: str  # the dialled number, routes the fax
    caller: str  # CALLERID(num)
    caller_name: str  # CALLERID(name)
    fax: FaxReport

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Reception:
        fax = FaxReport.from_dict(values["fax"])
        return cls(**{k: v for k, v in values.items() if k != "fax"}, fax=fax)


@dataclass(frozen=True)
class Received:
    """What a received fax's entry adds (meta.json: reception, tiff, received_at)."""

    reception: Reception
    tiff: str | None  # the TIFF to mail; None when ReceiveFAX wrote none
    received_at: float


@dataclass(frozen=True)
class MailMeta:
    """An entry's meta.json: who gets the mail, what is left to do, what went wrong last."""

    kind: Kind
    ref: str  # job id, call id, or the entry's own name
    # The envelope sender when spooled ("" when there was none): a seed mail's own; result and
    # received mails go with the policy's at hand-over (deliver.py), this is for older versions.
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    recipients: tuple[str, ...]  # still to deliver to
    refused: Mapping[str, str]  # recipient → 5xx reply
    remove_after: tuple[str, ...]  # files to delete once delivered
    created: float
    tries: int
    last_error: str | None
    # Absent from meta.json while None:
    received: Received | None = None  # kind "received" only
    message_id: str | None = None  # both set once the message is built
    smtputf8: bool | None = None
    delivered_to: tuple[str, ...] | None = None  # set by the first hand-over that got answers
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys of another version, kept

    def with_message(self, built: Built) -> MailMeta:
        return replace(self, smtputf8=built.smtputf8, message_id=built.message_id)

    def to_json(self) -> bytes:
        data: dict[str, Any] = dict(self.extra)
        data.update(
            kind=self.kind,
            ref=self.ref,
            sender=self.sender,
            to=list(self.to),
            cc=list(self.cc),
            recipients=list(self.recipients),
            refused=dict(self.refused),
            remove_after=list(self.remove_after),
            created=self.created,
            tries=self.tries,
            last_error=self.last_error,
        )
        if self.received is not None:
            data.update(
                reception=asdict(self.received.reception),
                tiff=self.received.tiff,
                received_at=self.received.received_at,
            )
        if self.message_id is not None:
            data["message_id"] = self.message_id
        if self.smtputf8 is not None:
            data["smtputf8"] = self.smtputf8
        if self.delivered_to is not None:
            data["delivered_to"] = list(self.delivered_to)
        return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> MailMeta:
        """Raises ValueError: json's own errors, or CorruptEntry."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise CorruptEntry(f"meta.json holds {type(data).__name__}, not an object")
        kind = _str(data, "kind")
        if not _is_kind(kind):
            raise CorruptEntry(f"meta.json: unknown kind {kind!r}")
        return cls(
            kind=kind,
            ref=_str(data, "ref"),
            sender=_str(data, "sender"),
            to=_strings(data, "to"),
            cc=_strings(data, "cc"),
            recipients=_strings(data, "recipients"),
            refused=_string_map(data, "refused"),
            remove_after=_strings(data, "remove_after"),
            created=_number(data, "created"),
            tries=_int(data, "tries"),
            last_error=_str_or_none(data, "last_error"),
            received=_received(data),
            message_id=_str(data, "message_id") if data.get("message_id") is not None else None,
            smtputf8=_bool(data, "smtputf8") if data.get("smtputf8") is not None else None,
            delivered_to=_strings(data, "delivered_to") if "delivered_to" in data else None,
            extra={k: v for k, v in data.items() if k not in _KEYS},
        )


def new_meta(kind: Kind, ref: str, sender: str, to: Sequence[str], cc: Sequence[str]) -> MailMeta:
    return MailMeta(
        kind=kind,
        ref=ref,
        sender=sender,
        to=tuple(to),
        cc=tuple(cc),
        recipients=tuple(dict.fromkeys([*to, *cc])),
        refused={},
        remove_after=(),
        created=time.time(),
        tries=0,
        last_error=None,
    )


@dataclass(frozen=True)
class BuiltMail:
    """A built message and the entry's meta with what building it added."""

    data: bytes
    meta: MailMeta


_KEYS = frozenset(
    {
        *("kind", "ref", "sender", "to", "cc", "recipients", "refused", "remove_after"),
        *("created", "tries", "last_error", "reception", "tiff", "received_at"),
        *("message_id", "smtputf8", "delivered_to"),
    }
)


def _is_kind(value: str) -> TypeGuard[Kind]:
    return value in get_args(Kind)


def _get(data: dict[str, Any], key: str) -> object:
    if key not in data:
        raise CorruptEntry(f"meta.json has no {key!r}")
    return data[key]


def _wrong(key: str, value: object, expected: str) -> CorruptEntry:
    return CorruptEntry(f"meta.json: {key!r} is {type(value).__name__}, not {expected}")


def _str(data: dict[str, Any], key: str) -> str:
    value = _get(data, key)
    if not isinstance(value, str):
        raise _wrong(key, value, "a string")
    return value


def _str_or_none(data: dict[str, Any], key: str) -> str | None:
    return None if _get(data, key) is None else _str(data, key)


def _int(data: dict[str, Any], key: str) -> int:
    value = _get(data, key)
    # bool is an int to isinstance(); in meta.json it is only ever a flag.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(key, value, "a whole number")
    return value


def _number(data: dict[str, Any], key: str) -> float:
    value = _get(data, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(key, value, "a number")
    return value  # as written: an int stays an int, so it is written back the same


def _bool(data: dict[str, Any], key: str) -> bool:
    value = _get(data, key)
    if not isinstance(value, bool):
        raise _wrong(key, value, "true or false")
    return value


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = _get(data, key)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _wrong(key, value, "a list of strings")
    return tuple(value)


def _string_map(data: dict[str, Any], key: str) -> dict[str, str]:
    value = _get(data, key)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _wrong(key, value, "a map of strings")
    return dict(value)


def _received(data: dict[str, Any]) -> Received | None:
    if "reception" not in data:
        return None
    reception = data["reception"]
    if not isinstance(reception, dict) or not isinstance(reception.get("fax"), dict):
        raise _wrong("reception", reception, "a reception with its fax report")
    try:
        parsed = Reception.from_dict(reception)
    except TypeError as exc:  # a key missing or unknown
        raise CorruptEntry(f"meta.json: 'reception' is not a reception: {exc}") from exc
    return Received(parsed, _str_or_none(data, "tiff"), _number(data, "received_at"))
