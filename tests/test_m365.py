"""Senders whose DKIM signature leaves To:/Cc: unsigned, as Microsoft 365 signs (policy
`unsigned_recipients`), and ed25519 signatures (RFC 8463).

Through the real Postfix (each test its own milter and job store), and the job store's
Message-ID claims as units. The guard's rules on Date:, Message-ID and To:/Cc: are unit-tested
in test_authenticate.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from faxmail.core.replies import LOCAL_ERROR, Refusal
from faxmail.outbound.replayguard import check_not_faxed, faxed_once
from faxmail.store.interface import AdminStore
from faxmail.store.sqlite import SqliteStore
from infra.dkimkeys import M365_HEADER, Signer, sign_like_m365
from infra.faxstate import callfiles, final_reply, job_rows
from infra.mail import Attachment, build_message
from infra.pdfs import make_pdf
from infra.protocols import MakePostfix, StartMilter
from infra.storekinds import OpenStore

FAX = "fax+03-1234-5678@example.jp"
OTHER_FAX = "fax+03-2222-3333@example.jp"
POLICY = """\
fax_address: {domains: [example.jp]}
senders:
  - address: "@example.jp"
    unsigned_recipients: SETTING
"""


def m365_fax(
    signer: Signer,
    *,
    message_id: str = "<m365-fax@example.jp>",
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A fax mail as Exchange Online sends it: signed now, To: (and Reply-To:) unsigned."""
    message = build_message(
        from_addr="alice@example.jp",
        to=[FAX],
        subject="見積書 / quotation",
        body="Please fax this.\n",
        attachments=[Attachment(make_pdf(1), filename="quote.pdf")],
        date="now",
        message_id=message_id,
        extra_headers=[M365_HEADER, *extra_headers],
    )
    return sign_like_m365(signer, message)


@pytest.mark.postfix
def test_m365_mail_is_faxed_once_and_its_replays_are_refused(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    milter = start_milter(None, POLICY.replace("SETTING", "true"))
    postfix = make_postfix(milter)
    signed = m365_fax(dkim_keys["example.jp"], extra_headers=(("Reply-To", "eve@example.jp"),))
    assert b"h=from : date : subject : message-id" in signed.lower().replace(b"\r\n", b"")
    result = postfix.send("alice@example.jp", [FAX], signed)
    assert final_reply(result).startswith("250"), result
    assert len(callfiles(milter)) == 1
    # Reply-To: is unsigned too: the result mail goes to the From: address.
    assert job_rows(milter, "author, reply_to") == [("alice@example.jp", None)]
    # The same mail again: another SMTP transaction, so a replay (the fax already went).
    result = postfix.send("alice@example.jp", [FAX], signed)
    reply = final_reply(result)
    assert reply.startswith("550 5.7.1 "), result
    assert "<m365-fax@example.jp> was already faxed in another SMTP transaction" in reply
    # After a restart, replayed to another number (To: is unsigned: anyone can change it).
    milter.stop()
    milter.start()
    replayed = signed.replace(f"To: {FAX}".encode(), f"To: {OTHER_FAX}".encode())
    assert replayed != signed
    result = postfix.send("mallory@example.jp", [OTHER_FAX], replayed)
    assert final_reply(result).startswith("550 5.7.1 "), result
    assert len(callfiles(milter)) == 1 and len(job_rows(milter)) == 1
    assert "was faxed in another SMTP transaction: a replay" in milter.log()


@pytest.mark.postfix
def test_m365_mail_without_the_setting_is_refused_naming_it(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    milter = start_milter(None, POLICY.replace("SETTING", "null"))  # the default: strict
    postfix = make_postfix(milter)
    result = postfix.send("alice@example.jp", [FAX], m365_fax(dkim_keys["example.jp"]))
    reply = final_reply(result)
    assert reply.startswith("550 5.7.21 No acceptable DKIM signature found"), result
    assert f"{FAX} is not in a signed To: or Cc: field" in reply
    assert "policy setting unsigned_recipients" in reply
    assert callfiles(milter) == [] and job_rows(milter) == []


@pytest.mark.postfix
def test_ed25519_only_signed_mail_is_faxed(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    milter = start_milter(None, POLICY.replace("SETTING", "false"))
    postfix = make_postfix(milter)
    message = build_message(
        from_addr="alice@example.jp",
        to=[FAX],
        attachments=[Attachment(make_pdf(1), filename="quote.pdf")],
    )
    signed = dkim_keys["ed25519"].sign(message)
    assert signed.count(b"DKIM-Signature:") == 1 and b"a=ed25519-sha256" in signed
    result = postfix.send("alice@example.jp", [FAX], signed)
    assert final_reply(result).startswith("250"), result
    assert len(callfiles(milter)) == 1
    ((proof, domain),) = job_rows(milter, "proof, dkim_domain")
    assert (proof, domain) == ("dkim", "example.jp")


# ---------------------------------------------------------------- the job store's claims


@pytest.fixture
def store(open_store: OpenStore) -> AdminStore:
    return open_store()  # each store kind: SQLite, PostgreSQL


def test_a_claim_is_one_transactions_and_survives_a_restart(
    store: AdminStore, open_store: OpenStore
) -> None:
    assert store.claim_message_id("<a@x>", "first", 1.0)
    assert store.claim_message_id("<a@x>", "first", 2.0)  # its own claim: several recipients
    assert not store.claim_message_id("<a@x>", "second", 3.0)
    store.release_message_id("<a@x>", "second")  # not its claim: nothing happens
    store.close()
    reopened = open_store()
    assert reopened.message_id_claimed("<a@x>")
    assert not reopened.claim_message_id("<a@x>", "third", 4.0)
    assert not reopened.message_id_claimed("<b@x>")


def test_faxed_once_refuses_a_second_transaction(store: AdminStore) -> None:
    with faxed_once(store, "<a@x>"):
        pass
    with pytest.raises(Refusal) as caught, faxed_once(store, "<a@x>"):
        pytest.fail("a second transaction must not queue")
    assert (caught.value.reply.code, caught.value.reply.enhanced) == ("550", "5.7.1")
    with pytest.raises(Refusal):
        check_not_faxed(store, "<a@x>")
    check_not_faxed(store, "<other@x>")


def test_a_transaction_that_queued_nothing_gives_its_claim_back(store: AdminStore) -> None:
    """A deferred (4xx) or refused mail is retried or fixed by its sender: no replay."""
    with pytest.raises(Refusal), faxed_once(store, "<a@x>"):
        raise Refusal(LOCAL_ERROR)  # e.g. the spool was full while queueing
    assert not store.message_id_claimed("<a@x>")
    with faxed_once(store, "<a@x>"):  # the sender's retry
        pass
    assert store.message_id_claimed("<a@x>")


def test_a_fully_signed_mail_claims_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "faxmail.sqlite")
    with faxed_once(store, None):
        pass
    check_not_faxed(store, None)
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT count(*) FROM message_id_claims").fetchall() == [(0,)]
