"""May this sender fax this number now? Destination rules and rate limits."""

from __future__ import annotations

import logging
import re

from phonenumbers import PhoneNumberType

from faxmail.core.policy import Policy, Sender
from faxmail.core.replies import LOCAL_ERROR, NUMBER_FORBIDDEN, RATE_LIMITED, Refusal
from faxmail.outbound.recipient import PhoneNumber
from faxmail.store.errors import StoreUnavailable
from faxmail.store.interface import JobStore
from faxmail.store.model import RateLimits

log = logging.getLogger("faxmail.authorize")

_TYPE_NAMES: dict[int, str] = {
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.UNKNOWN: "unknown",
}
_READABLE = {"premium_rate": "premium rate", "shared_cost": "shared cost", "uan": "UAN"}


def _matches(rule: str, e164: str) -> bool:
    return (
        re.search(rule[3:], e164) is not None if rule.startswith("re:") else e164.startswith(rule)
    )


def check_destination(number: PhoneNumber, policy: Policy, entry: Sender | None = None) -> None:
    """Raise Refusal(550 5.7.1 ... (reason)) unless the policy allows dialling `number`.

    `entry` narrows the site rules with the sender's own; None at RCPT time when the sender is
    not known yet (then only the site rules apply).
    """
    rules = policy.destinations

    def refuse(reason: str) -> Refusal:
        return Refusal(NUMBER_FORBIDDEN.format(number=number.e164, reason=reason))

    if number.short:
        raise refuse("emergency or short number")
    type_name = _TYPE_NAMES.get(number.number_type, "")
    if type_name in rules.deny_types:
        raise refuse(_READABLE.get(type_name, type_name.replace("_", " ")))
    own = entry.destinations if entry is not None else None
    international = (
        own.international if own and own.international is not None else rules.international
    )
    if number.region != rules.region and not international:
        raise refuse("international calls are off")
    for deny in (*rules.deny, *(own.deny if own else ())):
        if _matches(deny, number.e164):
            raise refuse("denied by the policy")
    for allow in (rules.allow, own.allow if own else ()):
        if allow and not any(_matches(rule, number.e164) for rule in allow):
            raise refuse("not in the allowed destinations")


def rate_limits(policy: Policy, entry: Sender | None) -> RateLimits:
    own = entry.limits if entry is not None else None
    return RateLimits(
        per_hour=own.per_hour if own and own.per_hour is not None else policy.limits.per_hour,
        per_day=own.per_day if own and own.per_day is not None else policy.limits.per_day,
    )


def max_pages(policy: Policy, entry: Sender | None) -> int:
    own = entry.limits.max_pages if entry is not None else None
    return own or policy.limits.max_pages or 50


def check_rate(store: JobStore, sender: str, limits: RateLimits, now: float) -> None:
    try:
        exceeded = store.rate_exceeded(sender, limits, now)
    except StoreUnavailable as exc:
        log.error("sender=%s: cannot count its faxes, the job store failed: %s", sender, exc)
        raise Refusal(LOCAL_ERROR) from exc
    if exceeded is not None:
        raise Refusal(
            RATE_LIMITED.format(sender=sender, count=exceeded.count, window=exceeded.window)
        )
