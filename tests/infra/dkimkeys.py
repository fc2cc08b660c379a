"""DKIM test keys (made with openssl, cached per process) and signing with dkimpy.

openssl rather than the ``cryptography`` package: it is already on every machine and keeps
the venv free of a dependency only tests would use. ``-traditional`` writes PKCS#1
("BEGIN RSA PRIVATE KEY"), the form dkimpy's parser documents. ed25519 keys (RFC 8463) come
from PyNaCl, which faxmail itself needs to verify them (``dkimpy[ed25519]``).
"""

from __future__ import annotations

import base64
import functools
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import dkim
import nacl.signing


@dataclass(frozen=True)
class DkimKey:
    """An RSA key pair: PKCS#1 PEM private key and DER SubjectPublicKeyInfo public key."""

    bits: int
    private_pem: bytes
    public_der: bytes
    algorithm: ClassVar[bytes] = b"rsa-sha256"

    @property
    def private_key(self) -> bytes:
        """As dkimpy's ``sign`` takes it."""
        return self.private_pem

    def txt(self, *, tags: str = "") -> str:
        """The DNS TXT value ``v=DKIM1; k=rsa; p=...`` (``tags`` e.g. ``"t=y; "`` goes
        before ``p=``)."""
        return f"v=DKIM1; k=rsa; {tags}p={base64.b64encode(self.public_der).decode('ascii')}"


@dataclass(frozen=True)
class Ed25519Key:
    """An ed25519 key pair (RFC 8463): the 32-byte private seed and public key."""

    seed: bytes
    public: bytes
    bits: ClassVar[int] = 256
    algorithm: ClassVar[bytes] = b"ed25519-sha256"

    @classmethod
    def generate(cls) -> Ed25519Key:
        key = nacl.signing.SigningKey.generate()
        return cls(seed=bytes(key), public=bytes(key.verify_key))

    @property
    def private_key(self) -> bytes:
        """As dkimpy's ``sign`` takes it: the seed, base64."""
        return base64.b64encode(self.seed)

    def txt(self, *, tags: str = "") -> str:
        """The DNS TXT value ``v=DKIM1; k=ed25519; p=...`` (the raw public key, base64)."""
        return f"v=DKIM1; k=ed25519; {tags}p={base64.b64encode(self.public).decode('ascii')}"


AnyKey = DkimKey | Ed25519Key


def generate_key(bits: int = 2048) -> DkimKey:
    """A fresh key pair (≈0.1-1 s for 2048 bits; use :func:`cached_key` to share one)."""
    pem = subprocess.run(
        ["openssl", "genrsa", "-traditional", str(bits)],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    der = subprocess.run(
        ["openssl", "rsa", "-pubout", "-outform", "DER"],
        input=pem,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return DkimKey(bits=bits, private_pem=pem, public_der=der)


@functools.cache
def cached_key(name: str, bits: int = 2048) -> DkimKey:
    """A key generated once per (name, bits) per process: session-wide caching."""
    return generate_key(bits)


@functools.cache
def cached_ed25519_key(name: str) -> Ed25519Key:
    """An ed25519 key generated once per name per process."""
    return Ed25519Key.generate()


def dns_name(selector: str, domain: str) -> str:
    """Where a verifier looks up the key: ``selector._domainkey.domain``."""
    return f"{selector}._domainkey.{domain}"


def sign(
    message: bytes,
    domain: str,
    selector: str,
    key: AnyKey,
    include_headers: Sequence[bytes] | None = None,
    length: bool = False,
    canonicalize: tuple[bytes, bytes] = (b"relaxed", b"simple"),
    identity: bytes | None = None,
) -> bytes:
    """``message`` (CRLF line endings) with a DKIM-Signature header prepended.

    ``include_headers=None`` signs dkimpy's default set (From, To, Subject, Date,
    Message-ID, ... where present); ``length=True`` adds ``l=`` (body length) so tests can
    append to the body after signing.
    """
    sig: bytes = dkim.sign(
        message,
        selector.encode("ascii"),
        domain.encode("ascii"),
        key.private_key,
        signature_algorithm=key.algorithm,
        identity=identity,
        canonicalize=canonicalize,
        include_headers=list(include_headers) if include_headers is not None else None,
        length=length,
        linesep=b"\r\n",
    )
    return sig + message


class _TimedDKIM(dkim.DKIM):  # type: ignore[misc]  # dkimpy has no type hints
    """dkimpy's signer with chosen t= and x= tags (its sign() always stamps now, no x=)."""

    def __init__(self, message: bytes, signed_at: int, expires_at: int) -> None:
        super().__init__(message, linesep=b"\r\n")
        self.times = (str(signed_at).encode("ascii"), str(expires_at).encode("ascii"))

    def gen_header(self, fields: list[tuple[bytes, bytes]], *args: Any, **kwargs: Any) -> bytes:
        signed_at, expires_at = self.times
        timed = [(name, signed_at if name == b"t" else value) for name, value in fields]
        timed.insert(
            next(i for i, (name, _) in enumerate(timed) if name == b"t") + 1, (b"x", expires_at)
        )
        header: bytes = super().gen_header(timed, *args, **kwargs)
        return header


def sign_with_times(
    message: bytes, domain: str, selector: str, key: AnyKey, *, signed_at: int, expires_at: int
) -> bytes:
    """``message`` with a DKIM-Signature whose t= and x= (expiry) are the given Unix times."""
    signer = _TimedDKIM(message, signed_at, expires_at)
    sig: bytes = signer.sign(
        selector.encode("ascii"),
        domain.encode("ascii"),
        key.private_key,
        signature_algorithm=key.algorithm,
    )
    return sig + message


@dataclass(frozen=True)
class Signer:
    """A key published (or deliberately not) at ``selector._domainkey.domain``."""

    domain: str
    selector: str
    key: AnyKey
    published: bool = True

    @property
    def dns_name(self) -> str:
        return dns_name(self.selector, self.domain)

    def sign(
        self,
        message: bytes,
        include_headers: Sequence[bytes] | None = None,
        length: bool = False,
        canonicalize: tuple[bytes, bytes] = (b"relaxed", b"simple"),
    ) -> bytes:
        return sign(
            message,
            self.domain,
            self.selector,
            self.key,
            include_headers=include_headers,
            length=length,
            canonicalize=canonicalize,
        )


#: What Microsoft 365 (Exchange Online) signs: neither To: nor Cc:.
M365_SIGNED_HEADERS: tuple[bytes, ...] = (
    b"From",
    b"Date",
    b"Subject",
    b"Message-ID",
    b"Content-Type",
    b"MIME-Version",
    b"X-MS-Exchange-SenderADCheck",
)

#: The header field Exchange Online adds and signs (the message needs it for a faithful h=).
M365_HEADER = ("X-MS-Exchange-SenderADCheck", "1")


def sign_like_m365(signer: Signer, message: bytes) -> bytes:
    """``message`` signed as Exchange Online signs: relaxed/relaxed, To:/Cc: left unsigned."""
    return signer.sign(
        message, include_headers=M365_SIGNED_HEADERS, canonicalize=(b"relaxed", b"relaxed")
    )


def default_signers() -> dict[str, Signer]:
    """The keys the test DNS serves, by role:

    - ``example.jp``: 2048-bit, ``sel._domainkey.example.jp``
    - ``other.example``: 2048-bit, ``sel._domainkey.other.example``
    - ``small``: 512-bit, ``small._domainkey.example.jp`` (below dkimpy's minkey=1024)
    - ``short``: 1023-bit, ``short._domainkey.example.jp`` (one bit below 1024)
    - ``unpublished``: 2048-bit, ``nokey._domainkey.example.jp``, not in DNS (NXDOMAIN)
    - ``wrong``: signs as ``sel._domainkey.example.jp`` with a key that is not the published
      one (signature fails)
    - ``ed25519``: ed25519 (RFC 8463), ``ed._domainkey.example.jp``
    """
    return {
        "example.jp": Signer("example.jp", "sel", cached_key("example.jp")),
        "other.example": Signer("other.example", "sel", cached_key("other.example")),
        "small": Signer("example.jp", "small", cached_key("small", 512)),
        "short": Signer("example.jp", "short", cached_key("short", 1023)),
        "unpublished": Signer("example.jp", "nokey", cached_key("unpublished"), published=False),
        "wrong": Signer("example.jp", "sel", cached_key("wrong"), published=False),
        "ed25519": Signer("example.jp", "ed", cached_ed25519_key("example.jp")),
    }


def dns_records(signers: dict[str, Signer]) -> dict[str, str]:
    """TXT records for every published signer, for :class:`infra.dns.DnsServer`."""
    return {s.dns_name: s.key.txt() for s in signers.values() if s.published}
