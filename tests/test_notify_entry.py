"""The notify spool entry (meta.json) as a typed value: it reads and writes exactly the JSON
every version has written, keeps keys it does not know, and a corrupt one stays in the spool
(logged), as an undecodable one always did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from faxmail.notify.entry import CorruptEntry, MailMeta, new_meta
from faxmail.notify.outbox import NotifySpool
from test_notify_support import NotifyEnv


def written(meta: dict[str, Any]) -> bytes:
    """meta.json as the spool has always written it."""
    return json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")


FRESH: dict[str, Any] = {
    "kind": "result",
    "ref": "0123456789abcdef",
    "sender": "fax-gw@example.jp",
    "to": ["alice@example.jp"],
    "cc": ["admin@example.jp"],
    "recipients": ["alice@example.jp", "admin@example.jp"],
    "refused": {},
    "remove_after": [],
    "created": 1700000000.123456,
    "tries": 0,
    "last_error": None,
}
TRIED = FRESH | {
    "recipients": ["admin@example.jp"],
    "refused": {"x@example.jp": "550 5.1.1 no such user"},
    "remove_after": ["/var/spool/asterisk/fax/0123456789abcdef.tif"],
    "tries": 2,
    "last_error": "recipients deferred: {'admin@example.jp': '451 4.3.0 later'}",
    "smtputf8": False,
    "message_id": "<faxmail.1.2@example.jp>",
    "delivered_to": ["alice@example.jp"],
}
RECEPTION = {
    "call_id": "1700000000.12",
    "tiff_name": "in.tif",
    "did": "0312345678",
    "caller": "0398765432",
    "caller_name": "ACME 商事",
    "fax": {
        "status": "SUCCESS",
        "error": "",
        "status_string": "OK",
        "pages": 2,
        "bitrate": 14400,
        "resolution": "8031x7700",
        "mode": "T38",
        "station": "ACME",
    },
}
RECEIVED = FRESH | {
    "kind": "received",
    "ref": "1700000000.12",
    "to": [],
    "cc": [],
    "recipients": [],
    "reception": RECEPTION,
    "tiff": "/var/spool/asterisk/fax-in/in.tif",
    "received_at": 1700000001.5,
}
MAIL = FRESH | {"kind": "mail", "ref": "mail-00ff", "cc": [], "smtputf8": True,
                "message_id": "<m@例え.jp>", "created": 1700000000}  # fmt: skip


@pytest.mark.parametrize(
    "meta",
    [
        FRESH,
        TRIED,
        RECEIVED,
        RECEIVED | {"tiff": None, "reception": RECEPTION | {"tiff_name": ""}},
        MAIL,
        FRESH | {"added_by_a_newer_version": {"any": [1, 2]}},
    ],
    ids=["result", "result-tried", "received", "received-no-tiff", "mail", "unknown-key"],
)
def test_meta_json_reads_and_writes_back_byte_for_byte(meta: dict[str, Any]) -> None:
    raw = written(meta)
    assert MailMeta.from_json(raw).to_json() == raw


def test_a_new_entry_has_the_keys_of_every_version() -> None:
    meta = new_meta("result", "0123456789abcdef", "f@example.jp", ["a@x.jp"], ["b@x.jp", "a@x.jp"])
    data = json.loads(meta.to_json())
    assert set(data) == set(FRESH)
    assert data["recipients"] == ["a@x.jp", "b@x.jp"]  # once each, To first
    assert (data["tries"], data["last_error"], data["refused"]) == (0, None, {})
    assert MailMeta.from_json(meta.to_json()) == meta


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in FRESH.items() if k != key}


CORRUPT = {
    "not-json": b'{"kind": "res',
    "not-utf8": b'{"kind": "\xff"}',
    "a-list": b"[]",
    "no-recipients": written(_without("recipients")),
    "tries-a-string": written(FRESH | {"tries": "1"}),
    "to-a-string": written(FRESH | {"to": "alice@example.jp"}),
    "unknown-kind": written(FRESH | {"kind": "fax"}),
    "reception-without-fax": written(RECEIVED | {"reception": {"did": "1"}}),
    "reception-unknown-key": written(RECEIVED | {"reception": RECEPTION | {"x": 1}}),
}


@pytest.mark.parametrize("raw", CORRUPT.values(), ids=CORRUPT.keys())
def test_a_corrupt_meta_json_is_a_value_error(tmp_path: Path, raw: bytes) -> None:
    with pytest.raises(ValueError):  # json's errors and CorruptEntry alike
        MailMeta.from_json(raw)
    spool = NotifySpool(tmp_path / "spool")
    (spool.root / "result-1").mkdir()
    (spool.root / "result-1" / "meta.json").write_bytes(raw)
    with pytest.raises(ValueError), spool.claim("result-1"):
        pass
    assert spool.read("result-1") is None
    (spool.root / "result-1").rename(spool.root / ".done-result-1")
    assert [(r.path.name, r.remove_after) for r in spool.retired()] == [(".done-result-1", ())]


def test_shape_errors_name_the_key() -> None:
    with pytest.raises(CorruptEntry, match="'recipients'"):
        MailMeta.from_json(written(_without("recipients")))


def test_retry_keeps_a_corrupt_entry_and_logs_it(tmp_path: Path) -> None:
    env = NotifyEnv(tmp_path, 9)  # nothing is handed over: port 9 is never asked
    for name, raw in (("mail-broken", b"{"), ("mail-partial", written(_without("sender")))):
        (env.spool / name).mkdir(parents=True)
        (env.spool / name / "meta.json").write_bytes(raw)
    ran = env.notify("retry")
    assert ran.code == 75, ran.stderr  # EX_TEMPFAIL: still waiting
    assert "still waiting: mail-broken" in ran.stderr
    assert "still waiting: mail-partial" in ran.stderr
    assert "mail-broken: delivery failed" in env.log()
    assert "mail-partial: delivery failed" in env.log()
    assert env.spooled() == ["mail-broken", "mail-partial"]
