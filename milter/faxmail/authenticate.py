"""Is the mail really from its From: address? DKIM, SASL, or a trusted client network."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import dkim
from dkim.canonicalization import CanonicalizationPolicy

from .dnslookup import DnsTempError, TxtLookup
from .policy import Authentication, Policy, Proof, Sender
from .replies import (
    DKIM_DNS_TEMPFAIL,
    DKIM_NONE,
    DKIM_NOT_ALIGNED,
    DKIM_UNACCEPTABLE,
    FROM_NOT_ALLOWED,
    Refusal,
)
from .senders import (
    domain_of,
    entries_for_author,
    network_matches,
    organizational_domain,
    sasl_matches,
)
from .session import Session

log = logging.getLogger("faxmail.dkim")

MAX_SIGNATURES = 8  # each costs a DNS lookup and an RSA verify; real mail has one or two


@dataclass(frozen=True)
class DkimPass:
    domain: str
    selector: str
    key_bits: int


def aligned(signing_domain: str, author_domain: str, mode: str) -> bool:
    signing_domain, author_domain = signing_domain.lower(), author_domain.lower()
    if mode == "strict":
        return signing_domain == author_domain
    return organizational_domain(signing_domain) == organizational_domain(author_domain)


def _unacceptable(signer: dkim.DKIM, fax_addresses: Sequence[str]) -> str | None:
    """Why a valid, aligned signature still does not vouch for this fax, or None."""
    sig = signer.signature_fields
    if b"l" in sig:
        canon = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
        if int(sig[b"l"]) < len(canon.canonicalize_body(signer.body)):
            return "the signature does not cover the whole body (l=)"
    signed = [(name.lower(), value) for name, value in signer.signed_headers]
    if not any(name == b"from" for name, _ in signed):
        return "From: is not signed"
    recipients = {
        addr.lower()
        for name, value in signed
        if name in (b"to", b"cc")
        for _, addr in email.utils.getaddresses([value.decode("utf-8", "replace")])
    }
    for fax in fax_addresses:
        if fax.lower() not in recipients:
            return f"{fax} is not in a signed To: or Cc: field"
    return None


def verify_dkim(
    raw: bytes,
    author_domain: str,
    fax_addresses: Sequence[str],
    lookup: TxtLookup,
    config: Authentication,
) -> DkimPass:
    """Return the first acceptable signature; raise Refusal with the RFC 7372 code otherwise."""
    signer = dkim.DKIM(raw, minkey=config.min_key_bits)
    count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
    dns_fault: str | None = None
    unaligned = False
    unacceptable: str | None = None
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
        why = _unacceptable(signer, fax_addresses)
        if why is not None:
            unacceptable = unacceptable or why
            continue
        return DkimPass(domain, signer.selector.decode("ascii", "replace"), signer.keysize)
    if dns_fault is not None:
        raise Refusal(DKIM_DNS_TEMPFAIL.format(why=dns_fault))
    if unacceptable is not None:
        raise Refusal(DKIM_UNACCEPTABLE.format(why=unacceptable))
    if unaligned:
        raise Refusal(DKIM_NOT_ALIGNED)
    raise Refusal(DKIM_NONE)


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
    raw: bytes,
    fax_addresses: Sequence[str],
    lookup: TxtLookup,
) -> Identity:
    """Find a sender entry for `author` whose proof holds. Cheap proofs (SASL, network) are
    tried before DKIM, which is verified at most once."""
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
    passed = verify_dkim(raw, domain_of(author), fax_addresses, lookup, policy.authentication)
    entry = wanting_dkim[0]
    return Identity(author, entry, "sasl" if "dkim" not in entry.proof else "dkim", passed)
