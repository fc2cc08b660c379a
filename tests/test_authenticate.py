"""DKIM and sender identification as pure functions (keys served from a dict here; the
Postfix tests use a real DNS server)."""

from __future__ import annotations

import io
import ipaddress

import pytest

from faxmail.core.policy import Authentication, Policy
from faxmail.core.replies import Refusal
from faxmail.core.session import Session
from faxmail.core.yamlfile import parse_yaml
from faxmail.outbound.authenticate import identify_sender, verify_dkim
from faxmail.outbound.dnslookup import DnsTempError, TxtLookup
from infra.dkimkeys import Signer, default_signers, dns_records
from infra.mail import build_message

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
