"""TXT lookups for DKIM keys that tell a missing key from a DNS fault.

dkimpy's own lookup answers None for a timeout or SERVFAIL, which would turn a passing DKIM
signature into a permanent 550. Ours raises DnsTempError instead, so the sender gets 451 4.7.5.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.exception
import dns.resolver

from faxmail.core.settings import Dns

TxtLookup = Callable[..., bytes | None]  # dkimpy calls it as f(name: bytes, timeout=...)


class DnsTempError(Exception):
    """The DNS did not answer (timeout, SERVFAIL, REFUSED): try again later."""


def make_txt_lookup(config: Dns) -> TxtLookup:
    resolver = dns.resolver.Resolver(configure=not config.nameservers)
    if config.nameservers:
        resolver.nameservers = list(config.nameservers)
        resolver.port = config.port
    resolver.lifetime = config.timeout

    def lookup(name: bytes, timeout: float = config.timeout) -> bytes | None:
        try:
            answer = resolver.resolve(
                name.decode("ascii"), "TXT", lifetime=min(timeout, config.timeout), search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None  # no such key: a permanent answer
        except (UnicodeDecodeError, dns.name.LabelTooLong, dns.name.EmptyLabel):
            return None  # a selector or domain that cannot exist
        except dns.exception.DNSException as exc:
            raise DnsTempError(
                f"{type(exc).__name__} looking up {name.decode('ascii', 'replace')}"
            ) from exc
        records = [b"".join(rdata.strings) for rdata in answer]
        # A selector with several TXT records: use the DKIM one (RFC 6376 3.6.2.2).
        for record in records:
            if record.lstrip().startswith(b"v=DKIM1"):
                return record
        return records[0] if records else None

    return lookup
