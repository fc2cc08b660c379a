"""Is the mail really from its From: address? DKIM, SASL, or a trusted client network."""

from __future__ import annotations

import base64
import binascii
import email.utils
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

import dkim

from faxmail.core.policy import Authentication, Policy, Proof, Sender
from faxmail.core.replies import (
    DKIM_DNS_TEMPFAIL,
    DKIM_NONE,
    DKIM_NOT_ALIGNED,
    DKIM_RECIPIENT_UNSIGNED,
    DKIM_UNACCEPTABLE,
    FROM_NOT_ALLOWED,
    Refusal,
    Reply,
)
from faxmail.core.session import Session
from faxmail.outbound.dkimbody import BodyHash, BodySpec, body_hash, read_header_block
from faxmail.outbound.dnslookup import DnsTempError, TxtLookup
from faxmail.outbound.replayguard import ReplayGuard, Unguarded, single_use_message_id
from faxmail.outbound.senders import (
    domain_of,
    entries_for_author,
    network_matches,
    organizational_domain,
    sasl_matches,
)

log = logging.getLogger("faxmail.dkim")

MAX_SIGNATURES = 8  # each costs a DNS lookup and an RSA verify; real mail has one or two


@dataclass(frozen=True)
class DkimPass:
    domain: str
    selector: str
    key_bits: int
    # Set when the signature left the fax addresses' To:/Cc: unsigned (unsigned_recipients):
    # this signed Message-ID may then be faxed in one SMTP transaction only.
    single_use_message_id: str | None = None


def aligned(signing_domain: str, author_domain: str, mode: str) -> bool:
    signing_domain, author_domain = signing_domain.lower(), author_domain.lower()
    if mode == "strict":
        return signing_domain == author_domain
    return organizational_domain(signing_domain) == organizational_domain(author_domain)


class _HeaderSignature(dkim.DKIM):  # type: ignore[misc]
    """dkimpy given the header only: the body hash comes from a stream over the spool file.

    dkimpy would canonicalise the whole body in memory; here each distinct bh= recipe is
    computed once by dkimbody.py and compared before dkimpy checks the header signature.
    """

    def __init__(self, message: IO[bytes], minkey: int) -> None:
        header, self.body_offset = read_header_block(message)
        super().__init__(header + b"\r\n", minkey=minkey)
        self.message = message
        self.body_hashes: dict[BodySpec, BodyHash] = {}
        self.last_body: BodyHash | None = None

    def body_hash(self, spec: BodySpec) -> BodyHash:
        if spec not in self.body_hashes:
            self.body_hashes[spec] = body_hash(self.message, self.body_offset, spec)
        return self.body_hashes[spec]

    def verify_sig_process(
        self, sig: dict[bytes, bytes], include_headers: Any, sig_header: Any, dnsfunc: Any
    ) -> bool:
        computed = self.body_hash(BodySpec.of(sig))
        try:
            expected = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]), validate=True)
        except binascii.Error:
            raise dkim.MessageFormatError("bh= is not base64") from None
        if computed.digest != expected:
            raise dkim.ValidationError("body hash mismatch")
        self.last_body = computed
        without_body = {tag: value for tag, value in sig.items() if tag != b"bh"}
        return bool(super().verify_sig_process(without_body, include_headers, sig_header, dnsfunc))


def _vouch(
    signer: _HeaderSignature, fax_addresses: Sequence[str], guard: ReplayGuard | None
) -> DkimPass | Reply:
    """What a valid, aligned signature vouches for: this fax, or the refusal saying why not.

    `guard` None: the fax addresses must be in signed To:/Cc: fields (the default rule)."""
    sig = signer.signature_fields
    body = signer.last_body
    if b"l" in sig and body is not None and int(sig[b"l"]) < body.canonical_length:
        return DKIM_UNACCEPTABLE.format(why="the signature does not cover the whole body (l=)")
    signed = [(name.lower(), value) for name, value in signer.signed_headers]
    if not any(name == b"from" for name, _ in signed):
        return DKIM_UNACCEPTABLE.format(why="From: is not signed")
    passed = DkimPass(
        signer.domain.decode("ascii", "replace"),
        signer.selector.decode("ascii", "replace"),
        signer.keysize,
    )
    recipients = {
        addr.lower()
        for name, value in signed
        if name in (b"to", b"cc")
        for _, addr in email.utils.getaddresses([value.decode("utf-8", "replace")])
    }
    unsigned = [fax for fax in fax_addresses if fax.lower() not in recipients]
    if not unsigned:
        return passed
    if guard is None:
        return DKIM_RECIPIENT_UNSIGNED.format(fax=unsigned[0])
    message_id = single_use_message_id(signed, signer.headers, fax_addresses, guard)
    if isinstance(message_id, Unguarded):
        return DKIM_UNACCEPTABLE.format(why=message_id.why)
    log.info("DKIM d=%s: To:/Cc: unsigned, accepted once for %s", passed.domain, message_id)
    return replace(passed, single_use_message_id=message_id)


def verify_dkim(
    message: IO[bytes],
    author_domain: str,
    fax_addresses: Sequence[str],
    lookup: TxtLookup,
    config: Authentication,
    *,
    guard: ReplayGuard | None = None,
) -> DkimPass:
    """Return the first acceptable signature; raise Refusal with the RFC 7372 code otherwise.

    `message` is the whole mail as a seekable binary file (the milter's spool file); `guard`:
    accept signatures that leave the fax addresses' To:/Cc: unsigned, under that guard."""
    try:
        signer = _HeaderSignature(message, minkey=config.min_key_bits)
    except dkim.DKIMException as exc:
        log.info("DKIM: header unreadable: %s", exc)
        raise Refusal(DKIM_NONE) from None
    count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
    dns_fault: str | None = None
    unaligned = False
    unacceptable: Reply | None = None
    for idx in range(min(count, MAX_SIGNATURES)):
        try:
            valid = signer.verify(idx=idx, dnsfunc=lookup)
        except DnsTempError as exc:
            dns_fault = str(exc)
            continue
        except dkim.DKIMException as exc:
            log.info("DKIM signature %d invalid: %s", idx, exc)
            continue
        if not valid:
            continue
        domain = signer.domain.decode("ascii", "replace")
        if not aligned(domain, author_domain, config.alignment):
            unaligned = True
            continue
        verdict = _vouch(signer, fax_addresses, guard)
        if isinstance(verdict, Reply):
            unacceptable = unacceptable or verdict
            continue
        return verdict
    if dns_fault is not None:
        raise Refusal(DKIM_DNS_TEMPFAIL.format(why=dns_fault))
    if unacceptable is not None:
        raise Refusal(unacceptable)
    if unaligned:
        raise Refusal(DKIM_NOT_ALIGNED)
    raise Refusal(DKIM_NONE)


def replay_guard(entry: Sender, config: Authentication, now: float) -> ReplayGuard | None:
    """The guard under which `entry` accepts signatures without signed To:/Cc:, or None."""
    allowed = entry.unsigned_recipients
    if allowed is None:  # the entry's own setting wins; else the global one
        allowed = config.unsigned_recipients
    if not allowed:
        return None
    return ReplayGuard(max_age_s=config.unsigned_recipients_max_age_minutes * 60, now=now)


@dataclass(frozen=True)
class Identity:
    """Who sent the fax, and how we know."""

    author: str  # the From: address
    entry: Sender  # the policy entry that vouches for it
    proof: Proof
    dkim: DkimPass | None = None


def identify_sender(
    author: str,
    session: Session,
    policy: Policy,
    *,
    message: IO[bytes],
    fax_addresses: Sequence[str],
    lookup: TxtLookup,
    now: float | None = None,
) -> Identity:
    """Find a sender entry for `author` whose proof holds. Cheap proofs (SASL, network) are
    tried before DKIM, which is verified at most once. `now`: when the mail arrived."""
    entries = entries_for_author(policy, author, session.sasl_user)
    if not entries:
        raise Refusal(FROM_NOT_ALLOWED.format(sender=author))
    sasl_needs_dkim = policy.authentication.sasl_requires_dkim
    for entry in entries:
        if "network" in entry.proof and network_matches(entry, session.client_ip):
            return Identity(author, entry, "network")
        if "sasl" in entry.proof and sasl_matches(entry, session.sasl_user) and not sasl_needs_dkim:
            return Identity(author, entry, "sasl")
    wanting_dkim = [
        e
        for e in entries
        if "dkim" in e.proof
        or (sasl_needs_dkim and "sasl" in e.proof and sasl_matches(e, session.sasl_user))
    ]
    if not wanting_dkim:
        raise Refusal(FROM_NOT_ALLOWED.format(sender=author))
    entry = wanting_dkim[0]
    passed = verify_dkim(
        message,
        domain_of(author),
        fax_addresses,
        lookup,
        policy.authentication,
        guard=replay_guard(entry, policy.authentication, time.time() if now is None else now),
    )
    return Identity(author, entry, "sasl" if "dkim" not in entry.proof else "dkim", passed)
