"""DKIM and sender identification as pure functions (keys served from a dict here; the
Postfix tests use a real DNS server)."""

from __future__ import annotations

import email.utils
import io
import ipaddress
from collections.abc import Sequence

import pytest

from faxmail.core.policy import Authentication, Policy, Sender
from faxmail.core.replies import Refusal
from faxmail.core.session import Session
from faxmail.core.yamlfile import parse_yaml
from faxmail.outbound.authenticate import identify_sender, replay_guard, verify_dkim
from faxmail.outbound.dnslookup import DnsTempError, TxtLookup
from faxmail.outbound.replayguard import ReplayGuard
from infra.dkimkeys import (
    M365_HEADER,
    M365_SIGNED_HEADERS,
    Signer,
    default_signers,
    dns_records,
)
from infra.mail import FIXED_DATE, build_message

FAX = "fax+0312345678@example.jp"
CONFIG = Authentication()


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    return default_signers()


@pytest.fixture(scope="module")
def lookup(signers: dict[str, Signer]) -> TxtLookup:
    records = {f"{name}.".encode(): value.encode() for name, value in dns_records(signers).items()}

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        return records.get(name)

    return txt


def dead_dns(name: bytes, timeout: float = 5) -> bytes | None:
    raise DnsTempError("timeout")


def mail(author: str = "alice@example.jp", to: str = FAX, body: str = "hello\n") -> bytes:
    return build_message(from_addr=author, to=[to], subject="fax", body=body)


def code(exc: pytest.ExceptionInfo[Refusal]) -> str:
    return f"{exc.value.reply.code} {exc.value.reply.enhanced}"


def test_aligned_signature_passes(signers: dict[str, Signer], lookup: TxtLookup) -> None:
    raw = signers["example.jp"].sign(mail())
    passed = verify_dkim(io.BytesIO(raw), "example.jp", [FAX], lookup, CONFIG)
    assert (passed.domain, passed.selector, passed.key_bits) == ("example.jp", "sel", 2048)


def test_relaxed_alignment_accepts_subdomain(signers: dict[str, Signer], lookup: TxtLookup) -> None:
    raw = signers["example.jp"].sign(mail(author="alice@mail.example.jp"))
    assert (
        verify_dkim(io.BytesIO(raw), "mail.example.jp", [FAX], lookup, CONFIG).domain
        == "example.jp"
    )
    with pytest.raises(Refusal) as caught:
        verify_dkim(
            io.BytesIO(raw), "mail.example.jp", [FAX], lookup, Authentication(alignment="strict")
        )
    assert code(caught) == "550 5.7.22"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unsigned", "550 5.7.20"),
        ("body altered", "550 5.7.20"),
        ("other domain", "550 5.7.22"),
        ("small key", "550 5.7.20"),
        ("no key in DNS", "550 5.7.20"),
        ("wrong key", "550 5.7.20"),
        ("l= and appended part", "550 5.7.21"),
        ("fax address not signed", "550 5.7.21"),
        ("dns down", "451 4.7.5"),
    ],
)
def test_refusals(case: str, expected: str, signers: dict[str, Signer], lookup: TxtLookup) -> None:
    raw = mail()
    dns = lookup
    if case == "body altered":
        raw = signers["example.jp"].sign(raw).replace(b"hello", b"HELLO")
    elif case == "other domain":
        raw = signers["other.example"].sign(raw)
    elif case == "small key":
        raw = signers["small"].sign(raw)
    elif case == "no key in DNS":
        raw = signers["unpublished"].sign(raw)
    elif case == "wrong key":
        raw = signers["wrong"].sign(raw)
    elif case == "l= and appended part":
        raw = signers["example.jp"].sign(raw, length=True) + b"appended PDF part\r\n"
    elif case == "fax address not signed":
        # Signed for a colleague, then replayed to the fax address (Bcc-style).
        raw = signers["example.jp"].sign(mail(to="bob@example.jp"))
    elif case == "dns down":
        raw, dns = signers["example.jp"].sign(raw), dead_dns
    with pytest.raises(Refusal) as caught:
        verify_dkim(io.BytesIO(raw), "example.jp", [FAX], dns, CONFIG)
    assert code(caught) == expected


def test_l_covering_whole_body_passes(signers: dict[str, Signer], lookup: TxtLookup) -> None:
    raw = signers["example.jp"].sign(mail(), length=True)
    assert verify_dkim(io.BytesIO(raw), "example.jp", [FAX], lookup, CONFIG).domain == "example.jp"


POLICY = parse_yaml(
    """
fax_address: {domains: [example.jp]}
senders:
  - address: "@example.jp"
  - address: scanner@example.jp
    proof: [network]
    networks: [192.168.10.0/24]
  - sasl_user: tanaka
    proof: [sasl]
""",
    Policy,
    "test",
)


def session(**kw: object) -> Session:
    values: dict[str, object] = {"envelope_sender": "x@example.jp"}
    values.update(kw)
    return Session(**values)  # type: ignore[arg-type]


def test_identify_by_each_proof(signers: dict[str, Signer], lookup: TxtLookup) -> None:
    unsigned = mail(author="scanner@example.jp")
    lan = session(client_ip=ipaddress.ip_address("192.168.10.7"))
    who = identify_sender(
        "scanner@example.jp",
        lan,
        POLICY,
        message=io.BytesIO(unsigned),
        fax_addresses=[FAX],
        lookup=dead_dns,
    )
    assert who.proof == "network"
    who = identify_sender(
        "tanaka@anywhere.example",
        session(sasl_user="tanaka"),
        POLICY,
        message=io.BytesIO(mail(author="tanaka@anywhere.example")),
        fax_addresses=[FAX],
        lookup=dead_dns,
    )
    assert who.proof == "sasl"
    signed = signers["example.jp"].sign(mail())
    who = identify_sender(
        "alice@example.jp",
        session(),
        POLICY,
        message=io.BytesIO(signed),
        fax_addresses=[FAX],
        lookup=lookup,
    )
    assert who.proof == "dkim" and who.dkim is not None


def test_network_outside_needs_dkim(lookup: TxtLookup) -> None:
    outside = session(client_ip=ipaddress.ip_address("203.0.113.9"))
    with pytest.raises(Refusal) as caught:
        identify_sender(
            "scanner@example.jp",
            outside,
            POLICY,
            message=io.BytesIO(mail(author="scanner@example.jp")),
            fax_addresses=[FAX],
            lookup=lookup,
        )
    assert code(caught) == "550 5.7.20"


def test_unknown_author_is_refused_before_dkim(lookup: TxtLookup) -> None:
    with pytest.raises(Refusal) as caught:
        identify_sender(
            "eve@evil.example",
            session(),
            POLICY,
            message=io.BytesIO(mail(author="eve@evil.example")),
            fax_addresses=[FAX],
            lookup=dead_dns,
        )
    assert code(caught) == "550 5.7.1"
    assert "eve@evil.example" in caught.value.reply.text


# ---------------------------------------------------------------- ed25519 (RFC 8463)


def test_ed25519_signature_passes(signers: dict[str, Signer], lookup: TxtLookup) -> None:
    raw = signers["ed25519"].sign(mail())
    passed = verify_dkim(io.BytesIO(raw), "example.jp", [FAX], lookup, CONFIG)
    assert (passed.domain, passed.selector, passed.key_bits) == ("example.jp", "ed", 256)


# ---------------------------------------------------------------- To:/Cc: left unsigned

ARRIVAL = email.utils.parsedate_to_datetime(FIXED_DATE).timestamp() + 60  # a minute later
GUARD = ReplayGuard(max_age_s=30 * 60, now=ARRIVAL)


def m365_mail(
    *,
    date: str = FIXED_DATE,
    to: str = FAX,
    signed: Sequence[bytes] = M365_SIGNED_HEADERS,
    message_id: str = "<m365-1@example.jp>",
) -> bytes:
    message = build_message(
        from_addr="alice@example.jp",
        to=[to],
        date=date,
        message_id=message_id,
        extra_headers=[M365_HEADER],
    )
    return default_signers()["example.jp"].sign(
        message, include_headers=signed, canonicalize=(b"relaxed", b"relaxed")
    )


def test_m365_signature_is_refused_by_default_naming_the_setting(lookup: TxtLookup) -> None:
    with pytest.raises(Refusal) as caught:
        verify_dkim(io.BytesIO(m365_mail()), "example.jp", [FAX], lookup, CONFIG)
    assert code(caught) == "550 5.7.21"
    assert FAX in caught.value.reply.text
    assert "unsigned_recipients" in caught.value.reply.text


def test_m365_signature_passes_under_the_guard_once_per_message_id(lookup: TxtLookup) -> None:
    raw = m365_mail(message_id="<AB12 @ example.jp>")
    passed = verify_dkim(io.BytesIO(raw), "example.jp", [FAX], lookup, CONFIG, guard=GUARD)
    assert passed.domain == "example.jp"
    assert passed.single_use_message_id == "<AB12@example.jp>"  # whitespace is no part of it


def test_fully_signed_mail_needs_no_single_use(
    signers: dict[str, Signer], lookup: TxtLookup
) -> None:
    raw = signers["example.jp"].sign(mail())
    passed = verify_dkim(io.BytesIO(raw), "example.jp", [FAX], lookup, CONFIG, guard=GUARD)
    assert passed.single_use_message_id is None


def _minutes_from_fixed_date(minutes: int) -> str:
    return email.utils.formatdate(ARRIVAL - 60 + minutes * 60, usegmt=True)


@pytest.mark.parametrize("minutes", [-28, 0, 5])  # arrival is a minute after the Date
def test_dates_inside_the_window_pass(minutes: int, lookup: TxtLookup) -> None:
    raw = m365_mail(date=_minutes_from_fixed_date(minutes))
    passed = verify_dkim(io.BytesIO(raw), "example.jp", [FAX], lookup, CONFIG, guard=GUARD)
    assert passed.single_use_message_id == "<m365-1@example.jp>"


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("Date 40 minutes old", "is 41 minutes old; at most 30 allowed"),
        ("Date 10 minutes ahead", "is 9 minutes in the future"),
        ("Date unreadable", "the signed Date: cannot be read"),
        ("Date not signed", "Date: is not signed"),
        ("Message-ID not signed", "Message-ID: is not signed"),
        ("number in no To/Cc", f"{FAX} is in no To: or Cc: field"),
    ],
)
def test_guard_refusals(case: str, words: str, lookup: TxtLookup) -> None:
    without = {
        "Date not signed": b"Date",
        "Message-ID not signed": b"Message-ID",
    }.get(case)
    raw = m365_mail(
        date={
            "Date 40 minutes old": _minutes_from_fixed_date(-40),
            "Date 10 minutes ahead": _minutes_from_fixed_date(10),
            "Date unreadable": "yesterday, around noon",
        }.get(case, FIXED_DATE),
        to="bob@example.jp" if case == "number in no To/Cc" else FAX,
        signed=[h for h in M365_SIGNED_HEADERS if h != without],
    )
    with pytest.raises(Refusal) as caught:
        verify_dkim(io.BytesIO(raw), "example.jp", [FAX], lookup, CONFIG, guard=GUARD)
    assert code(caught) == "550 5.7.21"
    assert words in caught.value.reply.text, caught.value.reply.text


def test_unsigned_to_may_list_the_number_in_a_second_field(lookup: TxtLookup) -> None:
    """The (unsigned) fax address may be in any To:/Cc: field; Bcc alone is not enough."""
    raw = m365_mail(to="bob@example.jp")
    cc = b"Cc: " + FAX.encode() + b"\r\n"
    passed = verify_dkim(io.BytesIO(cc + raw), "example.jp", [FAX], lookup, CONFIG, guard=GUARD)
    assert passed.single_use_message_id == "<m365-1@example.jp>"


def test_utc_date_without_zone_is_read_as_utc(lookup: TxtLookup) -> None:
    date = email.utils.formatdate(ARRIVAL - 120)  # "... -0000": UTC, the sender's zone unknown
    assert date.endswith("-0000")
    passed = verify_dkim(
        io.BytesIO(m365_mail(date=date)), "example.jp", [FAX], lookup, CONFIG, guard=GUARD
    )
    assert passed.single_use_message_id is not None


@pytest.mark.parametrize(
    ("entry", "default", "guarded"),
    [(None, False, False), (None, True, True), (True, False, True), (False, True, False)],
)
def test_entry_setting_overrides_the_global_one(
    entry: bool | None, default: bool, guarded: bool
) -> None:
    sender = Sender(address="@example.jp", unsigned_recipients=entry)
    config = Authentication(unsigned_recipients=default, unsigned_recipients_max_age_minutes=15)
    guard = replay_guard(sender, config, ARRIVAL)
    assert (guard is not None) == guarded
    assert guard is None or guard == ReplayGuard(max_age_s=900, now=ARRIVAL)


def test_identify_sender_uses_the_entry_setting(lookup: TxtLookup) -> None:
    policy = parse_yaml(
        """
fax_address: {domains: [example.jp]}
senders:
  - {address: "@example.jp", unsigned_recipients: true}
""",
        Policy,
        "test",
    )
    who = identify_sender(
        "alice@example.jp",
        session(),
        policy,
        message=io.BytesIO(m365_mail()),
        fax_addresses=[FAX],
        lookup=lookup,
        now=ARRIVAL,
    )
    assert who.proof == "dkim" and who.dkim is not None
    assert who.dkim.single_use_message_id == "<m365-1@example.jp>"
    with pytest.raises(Refusal) as caught:  # the global default is the strict rule
        identify_sender(
            "alice@example.jp",
            session(),
            POLICY,
            message=io.BytesIO(m365_mail()),
            fax_addresses=[FAX],
            lookup=lookup,
            now=ARRIVAL,
        )
    assert code(caught) == "550 5.7.21"
