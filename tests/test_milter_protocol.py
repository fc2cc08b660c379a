"""The milter protocol itself, driven by a test MTA (PyPI miltertest) against the real daemon:
what we negotiate, and what each stage answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import miltertest as mt
import pytest

from infra.constants import FAX_DIGITS as FAX
from infra.faxstate import callfiles
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.pdfs import make_pdf
from infra.protocols import StartMilter

POLICY = """\
fax_address: {domains: [example.jp]}
senders:
  - sasl_user: alice
    proof: [sasl]
limits: {max_message_bytes: 20000}
"""


@pytest.fixture
def milter(start_milter: StartMilter) -> MilterProcess:
    return start_milter(None, POLICY)


@pytest.fixture
def conn(milter: MilterProcess) -> Iterator[mt.MilterConnection]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(milter.settings["socket"]).split(":", 1)[1])
    connection = mt.MilterConnection(sock)
    connection.optneg_mta()
    connection.send(
        mt.SMFIC_CONNECT,
        hostname="client.test",
        family=mt.SMFIA_INET,
        port=4711,
        address="192.0.2.7",
    )
    yield connection
    sock.close()


def envelope(
    conn: mt.MilterConnection, rcpt: str, sasl_user: str | None = None
) -> tuple[str, dict[str, object]]:
    if sasl_user:
        conn.send_macro(mt.SMFIC_MAIL, **{"{auth_authen}": sasl_user})
    conn.send(mt.SMFIC_MAIL, args=["<alice@example.jp>"])
    reply: tuple[str, dict[str, object]] = conn.send_get(mt.SMFIC_RCPT, args=[f"<{rcpt}>"])
    return reply


def test_negotiation_asks_for_no_silent_stages(milter: MilterProcess) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(milter.settings["socket"]).split(":", 1)[1])
    actions, protocol = mt.MilterConnection(sock).optneg_mta()
    sock.close()
    no_reply = (
        mt.SMFIP_NR_CONN
        | mt.SMFIP_NR_MAIL
        | mt.SMFIP_NR_RCPT
        | mt.SMFIP_NR_DATA
        | mt.SMFIP_NR_HDR
        | mt.SMFIP_NR_EOH
        | mt.SMFIP_NR_BODY
    )
    assert protocol & no_reply == 0, "no-reply stages stall every mail behind Nagle on TCP"
    assert protocol & (mt.SMFIP_NOMAIL | mt.SMFIP_NORCPT | mt.SMFIP_NODATA | mt.SMFIP_NOHDRS) == 0
    assert protocol & mt.SMFIP_HDR_LEADSPC, "header bytes must arrive exactly as sent (DKIM)"
    assert actions & mt.SMFIF_ADDHDRS and actions & mt.SMFIF_DELRCPT


def test_ordinary_mail_is_accepted_at_data(conn: mt.MilterConnection) -> None:
    assert envelope(conn, "bob@example.jp")[0] == mt.SMFIR_CONTINUE
    assert conn.send_get(mt.SMFIC_DATA)[0] == mt.SMFIR_ACCEPT


def test_forbidden_number_rejected_at_rcpt(conn: mt.MilterConnection) -> None:
    code, reply = envelope(conn, "fax+0990123456@example.jp", sasl_user="alice")
    assert code == mt.SMFIR_REPLYCODE
    assert (
        reply["smtpcode"] == "550"
        and "5.7.1" in str(reply["text"])
        and "premium rate" in str(reply["text"])
    )


def _message(pages: int = 1) -> bytes:
    return build_message(
        from_addr="alice@example.jp",
        to=[FAX],
        attachments=[Attachment(make_pdf(pages), filename="a.pdf")],
    )


def _send_message(conn: mt.MilterConnection, raw: bytes) -> list[tuple[str, dict[str, object]]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert conn.send_get(mt.SMFIC_DATA)[0] == mt.SMFIR_CONTINUE
    headers = []
    for line in head.decode().replace("\r\n ", "\n ").replace("\r\n\t", "\n\t").split("\r\n"):
        name, _, value = line.partition(":")
        headers.append((name, value))
    conn.send_headers(headers)
    conn.send(mt.SMFIC_EOH)
    conn.send_body(body.decode("ascii"))  # miltertest sends str as UTF-8
    result: list[tuple[str, dict[str, object]]] = conn.send_eom()
    return result


def test_sasl_fax_is_queued_and_discarded(conn: mt.MilterConnection, milter: MilterProcess) -> None:
    assert envelope(conn, FAX, sasl_user="alice")[0] == mt.SMFIR_CONTINUE
    replies = _send_message(conn, _message())
    assert replies[-1][0] == mt.SMFIR_DISCARD, replies
    assert len(callfiles(milter)) == 1  # placed by the dispatcher, just after the reply


def test_size_limit_counted_as_bytes_arrive(conn: mt.MilterConnection) -> None:
    assert envelope(conn, FAX, sasl_user="alice")[0] == mt.SMFIR_CONTINUE
    assert conn.send_get(mt.SMFIC_DATA)[0] == mt.SMFIR_CONTINUE
    conn.send_headers([("From", " alice@example.jp")])
    conn.send(mt.SMFIC_EOH)
    code, reply = conn.send_get(mt.SMFIC_BODY, buf="x" * 30000)
    assert code == mt.SMFIR_REPLYCODE
    assert reply["smtpcode"] == "552" and "5.3.4" in str(reply["text"])
