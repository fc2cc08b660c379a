"""A sender's request to fax later, as any mail client can write it: a tag in the Subject.

    [at 18:30]              the next 18:30 (today, or tomorrow once it is past)
    [at 2026-12-02 09:00]   that day and time

Times are read in send_later.timezone, or in the zone of `now` (the host's) when it is unset;
"at" may be in any case, and the hour may have one digit. Only a bracket holding "at" and then a
digit is a request: "[at home]" is ordinary Subject text. A request that cannot be honoured
(not a time, past, too far ahead, two of them, sending later not enabled) is refused with
SEND_LATER_REFUSED rather than faxed at once: the sender asked for a time, not for now.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from faxmail.core.queuepolicy import SendLater
from faxmail.core.replies import SEND_LATER_REFUSED, Reply

_TAG = re.compile(r"\[\s*at\s*([0-9][^\]]*)\]", re.IGNORECASE)
_CLOCK = r"([0-9]{1,2}):([0-9]{2})"
_TIME_ONLY = re.compile(rf"{_CLOCK}")
_DATE_TIME = re.compile(rf"([0-9]{{4}})-([0-9]{{2}})-([0-9]{{2}})\s+{_CLOCK}")


@dataclass(frozen=True)
class SendLaterRefused:
    why: str  # a short English sentence part, shown to the sender in the SMTP reply

    @property
    def reply(self) -> Reply:
        return SEND_LATER_REFUSED.format(why=self.why)


def send_later(subject: str, rules: SendLater, now: datetime) -> datetime | SendLaterRefused | None:
    """The not-before time the Subject asks for (aware), a refusal, or None: no request."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    tags = _TAG.findall(subject)
    if not tags:
        return None
    if len(tags) > 1:
        return SendLaterRefused("the Subject asks for more than one time")
    if not rules.enabled:
        return SendLaterRefused("sending later is not enabled here")
    asked = " ".join(tags[0].split())
    zone = ZoneInfo(rules.timezone) if rules.timezone else now.tzinfo
    when = _read(asked, now.astimezone(zone))
    if when is None:
        return SendLaterRefused(f"[at {asked}] is not a time like [at 18:30]")
    if when <= now:
        return SendLaterRefused(f"{asked} is already past")
    if when - now > timedelta(hours=rules.max_ahead_hours):
        return SendLaterRefused(f"{asked} is more than {rules.max_ahead_hours:g} hours ahead")
    return when


def _read(asked: str, local_now: datetime) -> datetime | None:
    """The moment `asked` names, in local_now's zone; None when it names none."""
    if match := _TIME_ONLY.fullmatch(asked):
        day, (hour, minute) = local_now.date(), match.groups()
    elif match := _DATE_TIME.fullmatch(asked):
        year, month, mday, hour, minute = match.groups()
        try:
            day = date(int(year), int(month), int(mday))
        except ValueError:
            return None
    else:
        return None
    if int(hour) > 23 or int(minute) > 59:
        return None
    at = time(int(hour), int(minute))
    when = _wall_time(day, at, local_now)
    if match.re is _TIME_ONLY and when <= local_now:
        when = _wall_time(day + timedelta(days=1), at, local_now)  # past today: tomorrow's
    return when


def _wall_time(day: date, at: time, local_now: datetime) -> datetime:
    # Through UTC and back: a wall time that a clock change skips becomes a real instant.
    moment = datetime.combine(day, at, tzinfo=local_now.tzinfo)
    return moment.astimezone(UTC).astimezone(local_now.tzinfo)
