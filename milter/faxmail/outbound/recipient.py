"""Recognise fax addresses (fax+<number>@<fax domain>) and read the number in them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import shortnumberinfo

from faxmail.core.policy import FaxAddress
from faxmail.core.replies import NUMBER_UNPARSABLE, Refusal

# What a person may type as a number in a local part: digits, a leading +, - and . as separators.
_NUMBER = re.compile(r"\+?[0-9][0-9.-]{0,30}")  # fullmatch: "$" would let a final newline by


@dataclass(frozen=True)
class PhoneNumber:
    given: str  # as written in the address, e.g. "03-1234-5678"
    e164: str  # "+81312345678"
    dialled: str  # digits the trunk dials from `region`: "0312345678", "0101415..." abroad
    region: str | None  # region of the number ("JP"), None if unknown
    number_type: int  # phonenumbers.PhoneNumberType
    short: bool  # a short or emergency number (110, 119, 911...)


@dataclass(frozen=True)
class FaxRecipient:
    address: str  # the RCPT TO address, as given (without <>)
    number: PhoneNumber
    preview: bool = False  # fax+preview+<number>@...: mail the pages back, dial nothing


PREVIEW_TAG = "preview"


def strip_brackets(address: str) -> str:
    address = address.strip()
    return address[1:-1] if address.startswith("<") and address.endswith(">") else address


def fax_number_text(address: str, pattern: FaxAddress) -> str | None:
    """The text after `fax+` if `address` is a fax address of ours, else None."""
    local, at, domain = strip_brackets(address).rpartition("@")
    if not at or domain.lower().rstrip(".") not in pattern.domains:
        return None
    prefix = pattern.local_part + pattern.delimiter
    if not local.lower().startswith(prefix.lower()):
        return None
    return local[len(prefix) :]


def parse_number(text: str, region: str) -> PhoneNumber:
    """Read a phone number; raise Refusal(553 5.1.3) if it is not one."""
    if not _NUMBER.fullmatch(text):
        raise Refusal(NUMBER_UNPARSABLE.format(number=text))
    digits = text.replace("-", "").replace(".", "")
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException as exc:
        raise Refusal(NUMBER_UNPARSABLE.format(number=text)) from exc
    short = shortnumberinfo.is_possible_short_number_for_region(
        number, region
    ) and not phonenumbers.is_possible_number(number)
    if shortnumberinfo.is_emergency_number(digits, region):
        short = True
    if not short and not phonenumbers.is_valid_number(number):
        raise Refusal(NUMBER_UNPARSABLE.format(number=text))
    number_region = phonenumbers.region_code_for_number(number)
    if short:
        dialled = digits
    elif number_region == region:
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        dialled = re.sub(r"\D", "", national)
    else:
        abroad = phonenumbers.format_out_of_country_calling_number(number, region)
        dialled = re.sub(r"\D", "", abroad)
    return PhoneNumber(
        given=text,
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        dialled=dialled,
        region=number_region,
        number_type=phonenumbers.number_type(number),
        short=short,
    )


def parse_recipient(
    address: str, pattern: FaxAddress, region: str, *, previews: bool = False
) -> FaxRecipient | None:
    """None for a mail address that is not a fax address; Refusal for a bad number.

    With `previews`, `fax+preview+<number>` asks for the pages by mail instead of a call."""
    text = fax_number_text(address, pattern)
    if text is None:
        return None
    tag = PREVIEW_TAG + pattern.delimiter
    if previews and text.lower().startswith(tag):
        number = parse_number(text[len(tag) :], region)
        return FaxRecipient(strip_brackets(address), number, preview=True)
    return FaxRecipient(strip_brackets(address), parse_number(text, region))
