"""What Postfix tells the milter about a mail before its content: typed, no milter types."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Session:
    envelope_sender: str  # MAIL FROM, without <>; "" for the null sender
    client_ip: IPAddress | None = None  # None: not a TCP client (e.g. local submission)
    sasl_user: str | None = None  # {auth_authen}, set only after SMTP AUTH succeeded
    queue_id: str | None = None  # Postfix's, for log lines


def parse_ip(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
