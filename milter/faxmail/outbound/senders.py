"""Which sender entries of the policy could vouch for a mail (pure matching, no proofs)."""

from __future__ import annotations

from publicsuffixlist import PublicSuffixList

from faxmail.core.policy import Policy, Sender
from faxmail.core.session import IPAddress, Session

_PSL = PublicSuffixList()  # ships its own list: no download at run time


def organizational_domain(domain: str) -> str:
    domain = domain.lower().rstrip(".")
    return _PSL.privatesuffix(domain) or domain


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def address_matches(pattern: str, address: str) -> bool:
    """`pattern` is "user@domain" (exact, case-insensitive) or "@domain" (any user there)."""
    address = address.lower()
    if pattern.startswith("@"):
        return domain_of(address) == pattern[1:] and "@" in address
    return address == pattern


def sasl_matches(entry: Sender, sasl_user: str | None) -> bool:
    return (
        entry.sasl_user is not None
        and sasl_user is not None
        and (entry.sasl_user.casefold() == sasl_user.casefold())
    )


def network_matches(entry: Sender, client_ip: IPAddress | None) -> bool:
    return client_ip is not None and any(client_ip in net for net in entry.networks)


def entries_for_author(policy: Policy, author: str, sasl_user: str | None) -> list[Sender]:
    """Entries that name this From: address (exact ones first), or this SASL user if they name
    no address at all."""
    exact: list[Sender] = []
    domain: list[Sender] = []
    sasl_only: list[Sender] = []
    for entry in policy.senders:
        if entry.address is None:
            if sasl_matches(entry, sasl_user):
                sasl_only.append(entry)
        elif address_matches(entry.address, author):
            (domain if entry.address.startswith("@") else exact).append(entry)
    return exact + domain + sasl_only


def could_match_at_rcpt(policy: Policy, session: Session) -> bool:
    """Before the body: could any entry match this envelope sender, SASL user or client?

    The envelope sender may differ from From: (bounce addresses of mail services), so a sender
    from the same organisational domain counts as a possible match.
    """
    sender_org = organizational_domain(domain_of(session.envelope_sender))
    for entry in policy.senders:
        if sasl_matches(entry, session.sasl_user) or network_matches(entry, session.client_ip):
            return True
        if entry.address is not None and session.envelope_sender:
            if address_matches(entry.address, session.envelope_sender):
                return True
            if organizational_domain(domain_of(entry.address)) == sender_org:
                return True
    return False
