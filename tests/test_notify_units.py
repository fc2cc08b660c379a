"""faxmail-notify's parts on their own: argument alphabets, settings and policy keys, the store
guards (also on a store made before notify's tables), the spool's locks, message headers."""

from __future__ import annotations

import base64
import email
import email.policy
import sqlite3
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from faxmail.core.policy import Inbound, Policy
from faxmail.core.settings import Settings
from faxmail.notify import args
from faxmail.notify.entry import new_meta
from faxmail.notify.messages import AddressError, compose, mailbox
from faxmail.notify.outbox import NotifySpool
from faxmail.notify.received import route
from faxmail.notify.seedmail import expand_escapes
from faxmail.notify.templates import reason_text, resolution_text
from faxmail.store.sqlite import SCHEMA, SqliteStore
from test_notify_support import NotifyEnv


def b64(text: str) -> str:
    """A free-text argument as the dialplan makes it: BASE64_ENCODE(.${X})."""
    return base64.b64encode(b"." + text.encode()).decode()


# --- arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (args.job_id, "0123456789abcdef;id"),
        (args.job_id, "../../etc/passwd"),
        (args.count, "1 2"),
        (args.status, "SUCCESS$(id)"),
        (args.phone, "0312345678`id`"),
        (args.file_name, "../fax.tif"),
        (args.file_name, ".hidden.tif"),
        (args.resolution, "8031x7700\n"),
        (args.text, "$(id)"),
        (args.text, "QUJD"[:3]),  # not a whole base64 quantum
        (args.text, "QU==JD"),
        (args.text, "A" * 9000),
    ],
)
def test_tokens_outside_their_alphabet_are_refused(check: object, value: str) -> None:
    with pytest.raises(args.Refused):
        check(value)  # type: ignore[operator]


def test_text_is_decoded_to_one_printable_line() -> None:
    hostile = "a\nb\x1b[31m\u202eevil $(id) `id` ' \""
    assert args.text(b64(hostile)) == "a b [31m evil $(id) `id` ' \""
    assert args.text(base64.b64encode(b"." + "山田商事".encode("cp932")).decode()) == "山田商事"
    assert args.text(b64("")) == ""
    with pytest.raises(args.Refused, match="does not encode"):
        args.text(base64.b64encode(b"no dot").decode())
    assert args.text("") == ""


# --- settings and policy ------------------------------------------------------------------


def test_mail_settings_defaults_and_checks() -> None:
    mail = Settings().mail
    assert (mail.transport, mail.security, mail.smtp_port) == ("sendmail", "none", 25)
    assert Settings.model_validate({"mail": {"security": "tls"}}).mail.smtp_port == 465
    with pytest.raises(ValidationError, match="password in clear text"):
        Settings.model_validate(
            {"mail": {"host": "smtp.example.net", "username": "u", "password_file": "/p"}}
        )
    with pytest.raises(ValidationError, match="go together"):
        Settings.model_validate({"mail": {"username": "u"}})
    assert Settings(state_dir=Path("/s")).notify_spool == Path("/s/notify-spool")


def test_policy_notify_and_inbound_keys() -> None:
    policy = Policy()
    assert policy.notify.fax_retries == 0 and policy.notify.attach_pdf
    assert policy.inbound.routes == {} and policy.inbound.default == ()
    with pytest.raises(ValidationError, match="DID"):
        Policy.model_validate({"inbound": {"routes": {"03-1234": ["a@example.jp"]}}})
    with pytest.raises(ValidationError, match="not a mail address"):
        Policy.model_validate({"inbound": {"default": ["not an address"]}})
    with pytest.raises(ValidationError, match=r"Name <fax@example\.jp>"):
        Policy.model_validate({"notify": {"from_address": "FAX <fax@example.jp"}})


def test_route_reads_dids_like_numbers() -> None:
    inbound = Inbound(routes={"0312345678": ("a@example.jp",)}, default=("d@example.jp",))
    assert route(inbound, "JP", "+81312345678") == ("a@example.jp",)
    assert route(inbound, "JP", "0312345678") == ("a@example.jp",)
    assert route(inbound, "JP", "0312345679") == ("d@example.jp",)
    assert route(inbound, "JP", "") == ("d@example.jp",)


# --- the store ----------------------------------------------------------------------------


def test_store_made_before_notify_gets_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "faxmail.sqlite"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.execute("INSERT INTO events (job_id, at, kind, detail) VALUES ('j1', 1, 'accepted', '{}')")
    old.commit()
    old.close()
    store = SqliteStore(path)
    assert [kind for _, kind, _ in store.events("j1")] == ["accepted"]
    assert store.pending_results() == [] and store.current_round("j1") == 1
    store.close()


def test_one_result_and_one_requeue_per_round(tmp_path: Path) -> None:
    env = NotifyEnv(tmp_path, 25)
    job = env.add_job()
    store = SqliteStore(env.state / "faxmail.sqlite")
    assert store.claim_requeue(job.id, 1) is True
    assert store.claim_requeue(job.id, 1) is False  # the same failure reported twice
    assert store.current_round(job.id) == 2
    assert store.claim_result(job.id, "failed", "fax-failed") is True
    assert store.claim_result(job.id, "sent", "fax-sent") is False
    assert store.claim_requeue(job.id, 2) is False  # the job is over
    assert store.get(job.id).state == "failed"  # type: ignore[union-attr]
    assert store.pending_results() == [job.id]
    store.result_delivered(job.id)
    assert store.pending_results() == []


# --- the spool ----------------------------------------------------------------------------


def test_spool_entries_are_created_once_and_delivered_by_one(tmp_path: Path) -> None:
    spool = NotifySpool(tmp_path / "spool")
    one, two = (new_meta("mail", "in-1", "f@example.jp", [to], []) for to in ("1@a.jp", "2@a.jp"))
    assert spool.create("in-1", one, b"message") is True
    assert spool.create("in-1", two) is False
    with spool.claim("in-1") as first:
        assert first is not None and first.meta == one
        with spool.claim("in-1") as second:
            assert second is None  # locked: somebody else delivers it
        spool.retire(first)
    with spool.claim("in-1") as gone:
        assert gone is None
    assert spool.names() == [] and [e.path.name for e in spool.retired()] == [".done-in-1"]


# --- messages and texts -------------------------------------------------------------------


def test_headers_round_trip() -> None:
    subject = '[FAILED] FAX受信: 0398765432 "ACME 商事" (3枚) ' + "長い件名です " * 12
    built = compose(
        sender="FAX 送信サービス <fax@example.jp>",
        to=["a@example.jp", '"Tanaka, Taro" <t@example.jp>'],
        subject=subject,
        text="本文\n",
    )
    head = built.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and max(len(line) for line in head.split(b"\r\n")) <= 78
    mail = email.message_from_bytes(built.data, policy=email.policy.default)
    assert mail["Subject"] == " ".join(subject.split())
    assert mail["From"].addresses[0].display_name == "FAX 送信サービス"
    assert [a.addr_spec for a in mail["To"].addresses] == ["a@example.jp", "t@example.jp"]
    assert mail["To"].addresses[1].display_name == "Tanaka, Taro"
    assert not built.smtputf8


def test_non_ascii_address_needs_smtputf8() -> None:
    built = compose(sender="fax@example.jp", to=["田中@example.jp"], subject="s", text="t")
    assert built.smtputf8 and "To: 田中@example.jp".encode() in built.data
    with pytest.raises(AddressError):
        mailbox("Tanaka, Taro <t@example.jp>")  # two mailboxes, not one


def test_texts() -> None:
    assert resolution_text("en", "8031x7700") == "fine (204x196 dpi)"
    assert resolution_text("ja", "8031x3850") == "標準 (204x98 dpi)"
    assert (
        reason_text("ja", "5") == "話し中" and reason_text("en", "42") == "not answered (reason 42)"
    )
    assert expand_escapes(r"STATUS: x\nERROR: y\t\\n") == "STATUS: x\nERROR: y\t\\n"


def test_store_records_attempts_in_order(tmp_path: Path) -> None:
    env = NotifyEnv(tmp_path, 25)
    job = env.add_job()
    store = SqliteStore(env.state / "faxmail.sqlite")
    store.record_attempt(job.id, 1, 1, "unanswered", reason="5")
    time.sleep(0.01)
    store.record_attempt(job.id, 1, 2, "answered", state="sending")
    assert [(a.attempt, a.outcome) for a in store.attempts(job.id)] == [
        (1, "unanswered"),
        (2, "answered"),
    ]
    assert store.get(job.id).state == "sending"  # type: ignore[union-attr]
