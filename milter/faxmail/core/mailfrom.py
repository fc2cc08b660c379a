"""Who our mails come from: `notify.from_address`, or a default that mail servers accept.

The old default, faxmail@<this host's FQDN>, is no mail address on a host whose FQDN is
`localhost` or has no dot (a fresh machine or container often is such a host): every result
mail then stayed in the notify spool. So the default falls back to the policy's first fax
domain, a domain the site receives mail for; only when neither exists is there no sender, and
the milter and `faxmail doctor` say so by the key's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr

from faxmail.core.policy import Policy

#: The local part of the default From: address.
DEFAULT_LOCAL_PART = "faxmail"
#: The policy key that names it.
KEY = "notify.from_address"


def is_mail_domain(host: str) -> bool:
    """Whether ``host`` could be the domain of a mail address that other servers accept."""
    host = host.lower().rstrip(".")
    return (
        "." in host
        and not host.startswith("localhost")
        and not host.endswith((".localdomain", ".local", ".localhost"))
    )


@dataclass(frozen=True)
class MailFrom:
    """The From: of our mails and its envelope sender, or why there is none."""

    header: str | None  # "Name <a@b>" or "a@b"; None: no usable sender
    source: str  # KEY, "the host name", "the fax domain", or "none"
    problem: str | None = None  # why there is none, to follow "notify.from_address: "

    @property
    def envelope(self) -> str | None:
        return parseaddr(self.header)[1] if self.header else None

    def describe(self) -> str:
        """One line for a log or a check: the sender and where it came from, or the problem."""
        if self.problem is not None:
            return f"{KEY}: {self.problem}"
        return f"mails of faxmail come from {self.header} ({self.source})"


def mail_from(policy: Policy, fqdn: str) -> MailFrom:
    """From: for our mails under ``policy`` on a host named ``fqdn``."""
    if policy.notify.from_address:
        return MailFrom(policy.notify.from_address, KEY)
    if is_mail_domain(fqdn):
        return MailFrom(f"{DEFAULT_LOCAL_PART}@{fqdn.lower().rstrip('.')}", "the host name")
    for domain in policy.fax_address.domains:
        if is_mail_domain(domain):
            return MailFrom(
                f"{DEFAULT_LOCAL_PART}@{domain}",
                f"the fax domain: notify.from_address is not set and this host's name {fqdn!r} "
                "is no mail domain",
            )
    return MailFrom(
        None,
        "none",
        f"not set, and neither this host's name {fqdn!r} nor a fax domain "
        "(fax_address.domains) is a mail domain: result and received-fax mails cannot be "
        "sent; set notify.from_address in the policy",
    )


def sends_mail_without_faxing(policy: Policy) -> bool:
    """Whether received faxes are mailed to someone (they need a sender even with no fax
    domain, when nothing can be faxed out)."""
    return bool(policy.inbound.routes or policy.inbound.default or policy.admin_cc)
