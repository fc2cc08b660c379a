"""Which lines a number's calls may go out on, and the lines as the scheduler sees them.

Several Asterisk hosts may each have a line for the same numbers (the same prefixes, or each
its line without prefixes): a call then takes whichever of them has a free channel, and a host
that is down leaves them to the others.
"""

from __future__ import annotations

from collections.abc import Collection

from faxmail.core.policy import Policy
from faxmail.core.queuepolicy import DialLine
from faxmail.queue.model import Line


def lines_of(policy: Policy, hosts_down: Collection[str] = ()) -> tuple[Line, ...]:
    """The lines that may carry calls now: those of the hosts that are not down."""
    return tuple(
        Line(line.name, line.channels)
        for line in policy.dial_lines()
        if line.host not in hosts_down
    )


def lines_for(number: str, policy: Policy) -> tuple[str, ...]:
    """The lines serving the E.164 `number`, one per host, in the policy's order: those with
    the longest prefix of it, else each host's first line without prefixes (the policy's check
    makes sure there is one)."""
    lines = policy.dial_lines()
    best: list[DialLine] = []
    best_length = 0
    for line in lines:
        for prefix in line.prefixes:
            if number.startswith(prefix) and len(prefix) >= best_length:
                if len(prefix) > best_length:
                    best, best_length = [], len(prefix)
                best.append(line)
    if not best:
        best = [line for line in lines if not line.prefixes]
    chosen: dict[str, str] = {}
    for line in best:
        chosen.setdefault(line.host, line.name)
    return tuple(chosen.values())


def line_for(number: str, policy: Policy) -> str:
    """The first line serving `number` (the only one when a single host dials)."""
    return lines_for(number, policy)[0]
