"""Proves the integration-test infrastructure itself: Postfix, SASL, milters, DNS, DKIM."""

from __future__ import annotations

import email
import email.policy
import subprocess
import time
from pathlib import Path

import dkim
import pytest
from dns.exception import Timeout as DnsTimeout

from infra.dkimkeys import Signer, sign
from infra.dns import DnsServer
from infra.mail import Attachment, build_message, crlf
from infra.milterproc import parse_socket, passmilter, postfix_spec
from infra.net import free_port
from infra.pdfs import make_encrypted_pdf, make_pdf, make_png
from infra.postfix import (
    SHIPPED_MILTER_CF,
    PostfixError,
    PostfixInstance,
    parse_main_cf,
    shipped_milter_settings,
)
from infra.protocols import MakePostfix

SENDER = "sender@other.example"


def _subject(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])


# ---------------------------------------------------------------- Postfix


@pytest.mark.postfix
def test_plain_delivery_and_per_recipient_replies(postfix: PostfixInstance) -> None:
    msg = build_message(to=["a@example.jp", "b@other.example"], subject="plain")
    res = postfix.send(SENDER, ["a@example.jp", "b@other.example", "c@nowhere.invalid"], msg)
    assert res.mail.code == 250
    assert res.rcpts["a@example.jp"].code == 250
    assert res.rcpts["b@other.example"].code == 250
    # Not a test domain: refused at RCPT, while the other recipients go through.
    assert res.rcpts["c@nowhere.invalid"].code == 550
    assert res.data is not None and res.data.code == 250 and res.queue_id
    [got] = postfix.wait_for_delivery("a@example.jp")
    assert _subject(got) == "plain"
    assert b"Delivered-To: a@example.jp" in got
    postfix.wait_for_delivery("b@other.example")
    postfix.wait_for_empty_queue()
    assert postfix.messages("someone-else@example.jp") == []
    assert f"{res.queue_id}: removed" in postfix.wait_for_log(f"{res.queue_id}: removed")[0]


@pytest.mark.postfix
def test_message_size_limit(make_postfix: MakePostfix) -> None:
    pf = make_postfix(message_size_limit=50_000)
    big = build_message(
        attachments=[Attachment(b"x" * 100_000, "application/octet-stream", "big.bin")]
    )
    res = pf.send(SENDER, ["a@example.jp"], big)
    assert res.data is not None and res.data.code == 552, res


@pytest.mark.postfix
def test_sasl_auth_plain(postfix: PostfixInstance) -> None:
    msg = build_message(subject="authenticated")
    res = postfix.send(SENDER, ["a@example.jp"], msg, sasl=("alice", "secret"))
    assert res.auth is not None and res.auth.code == 235, res
    assert res.data is not None and res.data.code == 250
    postfix.wait_for_delivery("a@example.jp")
    postfix.wait_for_log(r"sasl_method=PLAIN, sasl_username=alice")

    bad = postfix.send(SENDER, ["a@example.jp"], msg, sasl=("alice", "wrong"))
    assert bad.auth is not None and bad.auth.code == 535, bad
    assert bad.rcpts == {}


@pytest.mark.postfix
def test_dead_milter_tempfails(make_postfix: MakePostfix, workdir: Path) -> None:
    # milter_default_action = tempfail: nothing listening means 451 at MAIL FROM.
    pf = make_postfix(f"unix:{workdir / 'nobody-here.sock'}")
    res = pf.send(SENDER, ["a@example.jp"], build_message())
    assert res.mail.code == 451, res


def test_the_shipped_milter_lines_are_what_the_test_postfix_loads(tmp_path: Path) -> None:
    shipped = parse_main_cf(SHIPPED_MILTER_CF.read_text())
    loaded = shipped_milter_settings("unix:/tmp/x/milter.sock")
    # Everything as an admin pastes it, only the socket replaced.
    assert loaded == {**shipped, "smtpd_milters": "unix:/tmp/x/milter.sock"}
    assert loaded["non_smtpd_milters"] == "$smtpd_milters"
    assert (loaded["milter_protocol"], loaded["milter_default_action"]) == ("6", "tempfail")
    pf = PostfixInstance("unix:/tmp/x/milter.sock", base=tmp_path)
    assert pf.main_cf()["milter_content_timeout"] == shipped["milter_content_timeout"]
    broken = tmp_path / "main.cf.milter"
    broken.write_text("smtpd_milters = unix:/run/faxmail/milter.sock\n")
    with pytest.raises(PostfixError, match=r"not 'unix:/faxmail/milter\.sock'"):
        shipped_milter_settings("unix:/tmp/x/milter.sock", broken)
    assert parse_main_cf("# c\na = 1\n  2\nb =\n") == {"a": "1 2", "b": ""}
    with pytest.raises(ValueError, match="not a 'name = value' line"):
        parse_main_cf("smtpd_milters unix:/x\n")


@pytest.mark.postfix
@pytest.mark.parametrize("family", ["unix", "inet"])
def test_delivery_through_pass_milter(
    make_postfix: MakePostfix, workdir: Path, family: str
) -> None:
    sock = f"unix:{workdir / 'pass.sock'}" if family == "unix" else f"inet:{free_port()}@127.0.0.1"
    with passmilter(sock, workdir, dump=workdir / "dump") as milter:
        pf = make_postfix(milter)
        assert pf.main_cf()["smtpd_milters"] == milter.postfix_spec
        msg = build_message(to=["a@example.jp"], subject=f"via {family}")
        res = pf.send(SENDER, ["a@example.jp", "b@example.jp"], msg)
        assert res.data is not None and res.data.code == 250, (res, milter.log())
        assert _subject(pf.wait_for_delivery("a@example.jp")[0]) == f"via {family}"
        pf.wait_for_delivery("b@example.jp")
        dumped = list((workdir / "dump").glob(f"{res.queue_id}.eml"))
        assert len(dumped) == 1, "the pass milter did not see the message"
    assert milter.proc is not None and milter.proc.returncode == 0, milter.log()


@pytest.mark.postfix
def test_reload_switches_milter(postfix: PostfixInstance, workdir: Path) -> None:
    with passmilter(f"unix:{workdir / 'p.sock'}", workdir, dump=workdir / "dump") as milter:
        postfix.set_milter(milter.postfix_spec)
        res = postfix.send(SENDER, ["a@example.jp"], build_message())
        assert res.data is not None and res.data.code == 250
        assert (workdir / "dump" / f"{res.queue_id}.eml").exists()
    postfix.set_milter(None)
    res = postfix.send(SENDER, ["a@example.jp"], build_message())
    assert res.data is not None and res.data.code == 250  # milter gone, but not configured


@pytest.mark.postfix
def test_failed_start_reports_postfix_check() -> None:
    pf = PostfixInstance(extra_main_cf={"maillog_file_prefixes": "/nonexistent"})
    try:
        with pytest.raises(PostfixError, match="maillog_file"):
            pf.start()
        assert pf._master_pid() is None
    finally:
        pf.cleanup()


def test_socket_specs() -> None:
    assert parse_socket("unix:/a/b") == ("unix", "/a/b", 0)
    assert parse_socket("inet:123@127.0.0.1") == ("inet", "127.0.0.1", 123)
    assert postfix_spec("inet:123@127.0.0.1") == "inet:127.0.0.1:123"
    assert postfix_spec("inet:127.0.0.1:123") == "inet:127.0.0.1:123"
    assert postfix_spec("local:/x") == "unix:/x"


# ---------------------------------------------------------------- DNS and DKIM


@pytest.mark.postfix
def test_dns_serves_long_dkim_key(dns: DnsServer, dkim_keys: dict[str, Signer]) -> None:
    signer = dkim_keys["example.jp"]
    txt = signer.key.txt()
    assert len(txt) > 255  # needs several character-strings
    [rdata] = dns.resolver().resolve(signer.dns_name, "TXT")
    assert len(rdata.strings[0]) == 255  # dnsmasq split it
    assert b"".join(rdata.strings).decode() == txt

    msg = build_message(subject="署名付き", subject_charset="iso-2022-jp")
    signed = signer.sign(msg)
    assert signed.startswith(b"DKIM-Signature: ")
    assert dkim.verify(signed, dnsfunc=dns.dnsfunc())
    assert not dkim.verify(signed.replace(b"Hello.", b"Hellp."), dnsfunc=dns.dnsfunc())


@pytest.mark.postfix
def test_dkim_failure_cases(dns: DnsServer, dkim_keys: dict[str, Signer]) -> None:
    msg = build_message()
    f = dns.dnsfunc()
    assert not dkim.verify(dkim_keys["small"].sign(msg), dnsfunc=f)  # 512 < minkey 1024
    assert dkim.verify(dkim_keys["small"].sign(msg), dnsfunc=f, minkey=512)
    assert not dkim.verify(dkim_keys["unpublished"].sign(msg), dnsfunc=f)
    assert f(dkim_keys["unpublished"].dns_name.encode() + b".") is None  # NXDOMAIN
    assert not dkim.verify(dkim_keys["wrong"].sign(msg), dnsfunc=f)


@pytest.mark.postfix
def test_dns_stop_pause_restart(dns: DnsServer, dkim_keys: dict[str, Signer]) -> None:
    name = dkim_keys["example.jp"].dns_name.encode()
    f = dns.dnsfunc(timeout=0.5)
    assert f(name)
    dns.stop()
    with pytest.raises(DnsTimeout):  # dnspython's unconnected UDP never sees ICMP refusal
        f(name)
    dns.start()
    assert f(name)
    dns.pause()
    t = time.monotonic()
    with pytest.raises(DnsTimeout):  # hung server
        f(name)
    assert time.monotonic() - t >= 0.4
    dns.resume()
    assert f(name)
    dns.restart({"x._domainkey.example.jp": "v=DKIM1; p="})
    assert f(name) is None
    assert dns.txt("x._domainkey.example.jp") == [b"v=DKIM1; p="]
    # The `dns` fixture puts the default records back after this test.


@pytest.mark.postfix
def test_dkim_survives_postfix_and_milter(
    make_postfix: MakePostfix, workdir: Path, dns: DnsServer, dkim_keys: dict[str, Signer]
) -> None:
    msg = build_message(
        to=["fax@example.jp"],
        subject="ファクス送信のテスト、長い件名で折り返しを起こす" * 3,
        subject_charset="iso-2022-jp",
        attachments=[Attachment(make_pdf(2), "application/pdf", "doc.pdf")],
    )
    # Unusual but legal spacing after the colon: c=simple/ hashes it byte for byte.
    msg = msg.replace(b"\r\nTo: ", b"\r\nTo:").replace(b"\r\nDate: ", b"\r\nDate:\t ")
    for canon in ((b"relaxed", b"simple"), (b"simple", b"simple"), (b"relaxed", b"relaxed")):
        signed = sign(msg, "example.jp", "sel", dkim_keys["example.jp"].key, canonicalize=canon)
        assert dkim.verify(signed, dnsfunc=dns.dnsfunc())
        with passmilter(f"unix:{workdir / 'p.sock'}", workdir, dump=workdir / "dump") as m:
            pf = make_postfix(m)
            res = pf.send(SENDER, ["fax@example.jp"], signed)
            assert res.data is not None and res.data.code == 250
            seen = (workdir / "dump" / f"{res.queue_id}.eml").read_bytes()
            # What a milter reassembles from Postfix's header/body callbacks still verifies.
            assert dkim.verify(seen, dnsfunc=dns.dnsfunc()), (canon, seen[:3000])
            [delivered] = pf.wait_for_delivery("fax@example.jp")
            assert dkim.verify(crlf(delivered), dnsfunc=dns.dnsfunc()), canon
            pf.cleanup()


# ---------------------------------------------------------------- documents and mail


def test_pdfs_and_images(tmp_path: Path) -> None:
    pdf = make_pdf(3)
    assert pdf == make_pdf(3) and pdf.startswith(b"%PDF-")
    p = tmp_path / "x.pdf"
    p.write_bytes(pdf)
    out = subprocess.run(["qpdf", "--show-npages", str(p)], capture_output=True, text=True)
    assert out.stdout.strip() == "3"
    p.write_bytes(make_encrypted_pdf())
    assert subprocess.run(["qpdf", "--requires-password", str(p)]).returncode == 0
    assert make_png().startswith(b"\x89PNG\r\n\x1a\n")


def test_build_message_japanese() -> None:
    raw = build_message(
        subject="日本語の件名",
        subject_charset="iso-2022-jp",
        from_name="山田",
        cc=["c@other.example"],
        attachments=[Attachment(make_png(), "image/png", "図.png")],
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"=?iso-2022-jp?b?" in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "日本語の件名"
    assert parsed["Cc"] == "c@other.example"
    assert parsed["Message-ID"]
    [att] = parsed.iter_attachments()
    assert att.get_filename() == "図.png"
