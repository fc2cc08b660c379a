"""Which line a number's calls go out on, and the lines as the scheduler sees them."""

from __future__ import annotations

from faxmail.core.policy import Policy
from faxmail.queue.model import Line


def lines_of(policy: Policy) -> tuple[Line, ...]:
    return tuple(Line(line.name, line.channels) for line in policy.dial_lines())


def line_for(number: str, policy: Policy) -> str:
    """The line serving the E.164 `number`: the one with the longest prefix of it, else the
    first line without prefixes (the policy's check makes sure there is one)."""
    lines = policy.dial_lines()
    best, best_length = None, 0
    for line in lines:
        for prefix in line.prefixes:
            if number.startswith(prefix) and len(prefix) > best_length:
                best, best_length = line.name, len(prefix)
    if best is not None:
        return best
    return next(line.name for line in lines if not line.prefixes)
