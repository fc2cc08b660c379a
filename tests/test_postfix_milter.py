"""faxmail-milter through a real Postfix 3.7 on loopback, with DKIM keys from a real dnsmasq.

Each test starts its own milter (a fresh job store and spool) behind its own Postfix instance.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from faxmail.asterisk.callfile import parse_callfile
from infra.dkimkeys import Signer
from infra.dns import DnsServer
from infra.faxstate import callfiles, final_reply, job_rows, owed_calls, spool_dir
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.pdfs import make_pdf
from infra.postfix import PostfixInstance
from infra.protocols import MakePostfix, StartMilter

pytestmark = pytest.mark.postfix

FAX = "fax+03-1234-5678@example.jp"
POLICY = """\
fax_address: {domains: [example.jp]}
senders:
  - address: "@example.jp"
  - sasl_user: alice@faxmail.test   # as Postfix reports it (sasl_username in its log)
    proof: [sasl]
  - address: scanner@example.jp
    proof: [network]
    networks: [192.0.2.0/24]
limits: {per_hour: 5}
"""

Gateway = tuple[MilterProcess, PostfixInstance]


@pytest.fixture
def gateway(start_milter: StartMilter, make_postfix: MakePostfix) -> Gateway:
    milter = start_milter(None, POLICY)
    return milter, make_postfix(milter)


def fax_mail(
    *, pages: int = 1, author: str = "alice@example.jp", to: str = FAX, **kw: object
) -> bytes:
    return build_message(
        from_addr=author,
        to=[to],
        subject="見積書 / quotation",
        body="Please fax this.\n",
        attachments=[Attachment(make_pdf(pages), filename="quote.pdf")],
        **kw,  # type: ignore[arg-type]
    )


def test_signed_fax_is_queued(gateway: Gateway, dkim_keys: dict[str, Signer]) -> None:
    milter, postfix = gateway
    signed = dkim_keys["example.jp"].sign(fax_mail(pages=2))
    result = postfix.send("alice@example.jp", [FAX], signed)
    assert final_reply(result).startswith("250"), result
    (callfile,) = callfiles(milter)
    lines = dict(parse_callfile(callfile.read_bytes()))
    ((job_id, state, author, number, pages, subject),) = job_rows(
        milter, "id, state, author, number_e164, pages, subject"
    )
    assert (state, author, number, pages) == ("queued", "alice@example.jp", "+81312345678", 2)
    assert subject == "見積書 / quotation"
    assert callfile.name == f"{job_id}.call"
    assert lines["Channel"] == "PJSIP/0312345678@trunk"
    tiff = Path(spool_dir(milter) / "fax" / f"{job_id}.tif")
    assert tiff.is_file() and lines["Setvar"]  # the TIFF is where the call file says
    assert f"FAXFILE={tiff}" in callfile.read_text()
    assert "見積" not in callfile.read_text()  # no mail text in the call file
    assert re.search(
        rf"queued queue_id=\S+ job={job_id} from=alice@example.jp proof=dkim", milter.log()
    )
    # The fax recipient was the only one: the mail itself is discarded after queueing.
    postfix.wait_for_empty_queue()
    assert postfix.messages(FAX) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unsigned", "550 5.7.20"),
        ("body altered", "550 5.7.20"),
        ("other domain", "550 5.7.22"),
        ("l= and an appended part", "550 5.7.21"),
        ("replayed to the fax address", "550 5.7.21"),
        ("two From fields", "550 5.6.0"),
    ],
)
def test_dkim_refusals(
    case: str, expected: str, gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    signer = dkim_keys["example.jp"]
    message = fax_mail()
    if case == "body altered":
        message = signer.sign(message).replace(b"Please fax this.", b"Please fax THIS.")
    elif case == "other domain":
        message = dkim_keys["other.example"].sign(message)
    elif case == "l= and an appended part":
        signed = signer.sign(build_message(from_addr="alice@example.jp", to=[FAX]), length=True)
        message = signed + b"\r\n--x\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\r\n"
    elif case == "replayed to the fax address":
        message = signer.sign(fax_mail(to="bob@example.jp"))
    elif case == "two From fields":
        message = signer.sign(fax_mail(extra_headers=[("From", "boss@example.jp")]))
    result = postfix.send("alice@example.jp", [FAX], message)
    assert final_reply(result).startswith(expected), result
    assert callfiles(milter) == [] and job_rows(milter) == []


def test_unknown_sender_refused_at_rcpt_other_recipient_served(gateway: Gateway) -> None:
    milter, postfix = gateway
    result = postfix.send(
        "eve@evil.example", [FAX, "bob@example.jp"], fax_mail(author="eve@evil.example")
    )
    assert result.rcpts[FAX].code == 550 and "5.7.1" in result.rcpts[FAX].text
    assert "eve@evil.example" in result.rcpts[FAX].text
    assert result.rcpts["bob@example.jp"].code == 250
    assert final_reply(result).startswith("250")
    assert len(postfix.wait_for_delivery("bob@example.jp")) == 1
    assert callfiles(milter) == []


@pytest.mark.parametrize(
    ("number", "words"),
    [("0990-123-456", "premium rate"), ("110", "emergency"), ("+14155550100", "international")],
)
def test_forbidden_destinations_at_rcpt(gateway: Gateway, number: str, words: str) -> None:
    _, postfix = gateway
    address = f"fax+{number}@example.jp"
    result = postfix.send("alice@example.jp", [address], fax_mail(to=address))
    assert result.rcpts[address].code == 550
    assert "5.7.1" in result.rcpts[address].text and words in result.rcpts[address].text


def test_unparsable_number_is_553(gateway: Gateway) -> None:
    _, postfix = gateway
    address = "fax+call-me@example.jp"
    result = postfix.send("alice@example.jp", [address], fax_mail(to=address))
    assert result.rcpts[address].code == 553 and "5.1.3" in result.rcpts[address].text


def test_dns_down_is_451(gateway: Gateway, dns: DnsServer, dkim_keys: dict[str, Signer]) -> None:
    milter, postfix = gateway
    dns.stop()
    result = postfix.send("alice@example.jp", [FAX], dkim_keys["example.jp"].sign(fax_mail()))
    assert final_reply(result).startswith("451 4.7.5"), result
    assert callfiles(milter) == []


def test_sasl_user_needs_no_dkim(gateway: Gateway) -> None:
    milter, postfix = gateway
    message = fax_mail(author="alice.home@other.example")
    result = postfix.send(
        "alice.home@other.example", [FAX], message, sasl=("alice", "secret"), port=postfix.sasl_port
    )
    assert final_reply(result).startswith("250"), result
    assert len(callfiles(milter)) == 1
    assert "proof=sasl" in milter.log()


def test_network_vouches_for_the_scanner(
    start_milter: StartMilter, make_postfix: MakePostfix
) -> None:
    milter = start_milter(None, POLICY.replace("192.0.2.0/24", "127.0.0.0/8"))
    postfix = make_postfix(milter)
    result = postfix.send("scanner@example.jp", [FAX], fax_mail(author="scanner@example.jp"))
    assert final_reply(result).startswith("250"), result
    assert "proof=network" in milter.log()


def test_mixed_recipients_fax_removed_other_delivered(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    message = dkim_keys["example.jp"].sign(
        build_message(
            from_addr="alice@example.jp",
            to=[FAX, "bob@example.jp"],
            attachments=[Attachment(make_pdf(1), filename="a.pdf")],
        )
    )
    result = postfix.send("alice@example.jp", [FAX, "bob@example.jp"], message)
    assert final_reply(result).startswith("250"), result
    (delivered,) = postfix.wait_for_delivery("bob@example.jp")
    assert b"Authentication-Results: mx.faxmail.test; dkim=pass header.d=example.jp" in delivered
    assert b"X-Faxmail-Job:" in delivered
    assert len(callfiles(milter)) == 1
    postfix.wait_for_empty_queue()
    assert postfix.messages(FAX) == []


def test_ordinary_mail_never_shows_headers_or_body(gateway: Gateway) -> None:
    milter, postfix = gateway
    message = build_message(from_addr="carol@other.example", to=["bob@example.jp"])
    for _ in range(3):
        result = postfix.send("carol@other.example", ["bob@example.jp"], message)
        assert final_reply(result).startswith("250")
    postfix.wait_for_delivery("bob@example.jp", count=3)
    trace = [
        line.split("faxmail.protocol: ")[1]
        for line in milter.log().splitlines()
        if "faxmail.protocol: " in line
    ]
    assert trace.count("data") == 3
    assert not any(step.startswith(("header", "body", "eoh", "eom")) for step in trace), trace


def test_rate_limit_per_sender(gateway: Gateway, dkim_keys: dict[str, Signer]) -> None:
    milter, postfix = gateway
    for n in range(5):
        message = dkim_keys["example.jp"].sign(fax_mail(message_id=f"<rate{n}@example.jp>"))
        assert final_reply(postfix.send("alice@example.jp", [FAX], message)).startswith("250")
    message = dkim_keys["example.jp"].sign(fax_mail(message_id="<rate5@example.jp>"))
    result = postfix.send("alice@example.jp", [FAX], message)
    assert result.rcpts[FAX].code == 450 and "4.7.1" in result.rcpts[FAX].text
    assert len(owed_calls(milter)) == 5  # one number: one call placed, four waiting for it


def test_resent_mail_is_not_faxed_twice(gateway: Gateway, dkim_keys: dict[str, Signer]) -> None:
    milter, postfix = gateway
    message = dkim_keys["example.jp"].sign(fax_mail(message_id="<once@example.jp>"))
    for _ in range(2):
        assert final_reply(postfix.send("alice@example.jp", [FAX], message)).startswith("250")
    assert len(callfiles(milter)) == 1 and len(job_rows(milter)) == 1
    assert "duplicate of" in milter.log()


def milter_log_waits_for(milter: MilterProcess, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in milter.log():
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.05)


def test_policy_edit_takes_effect_and_broken_edit_is_ignored(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    policy = Path(milter.settings["policy"])

    def edit(text: str) -> None:
        policy.write_text(text)
        stamp = time.time() + 2  # a visibly new mtime even within one clock tick
        os.utime(policy, (stamp, stamp))

    edit(POLICY.replace("limits: {per_hour: 5}", "destinations: {deny: ['+813']}"))
    time.sleep(1.1)  # the milter looks at the file at most once a second
    result = postfix.send("alice@example.jp", [FAX], fax_mail())
    assert result.rcpts[FAX].code == 550 and "denied by the policy" in result.rcpts[FAX].text
    edit("senders: [broken")
    assert milter.pid is not None
    os.kill(milter.pid, signal.SIGHUP)  # as `systemctl reload` does
    milter_log_waits_for(milter, "SIGHUP: reloading the policy")
    result = postfix.send("alice@example.jp", [FAX], fax_mail())
    assert result.rcpts[FAX].code == 550, "the last good policy must stay in force"
    assert re.search(r"policy .*line \d+.*keeping the last good policy", milter.log())
