"""Fax addresses, phone numbers and destination rules (no sockets)."""

from __future__ import annotations

import pytest

from faxmail.core.policy import Policy
from faxmail.core.replies import Refusal
from faxmail.core.yamlfile import parse_yaml
from faxmail.outbound.authorize import check_destination
from faxmail.outbound.recipient import parse_number, parse_recipient

POLICY = parse_yaml(
    """
fax_address: {domains: [example.jp]}
senders:
  - address: "@example.jp"
  - address: boss@example.jp
    destinations: {international: true, deny: ["+8150"]}
destinations:
  deny: ["re:^\\\\+8133333"]
""",
    Policy,
    "test",
)


def recipient(address: str) -> object:
    return parse_recipient(address, POLICY.fax_address, "JP")


def test_ordinary_addresses_are_not_fax() -> None:
    for address in ("alice@example.jp", "fax@example.jp", "fax+0312345678@other.example", "<>"):
        assert recipient(address) is None


def test_number_forms() -> None:
    r = parse_recipient("<FAX+03-1234-5678@Example.JP>", POLICY.fax_address, "JP")
    assert r is not None
    assert (r.number.e164, r.number.dialled) == ("+81312345678", "0312345678")
    r = parse_recipient("fax++14155550100@example.jp", POLICY.fax_address, "JP")
    assert r is not None and r.number.dialled == "01014155550100"


@pytest.mark.parametrize("number", ["abc", "12", "03;rm", "0312345678901234567", "$(id)"])
def test_unparsable_number_is_553(number: str) -> None:
    with pytest.raises(Refusal) as caught:
        recipient(f"fax+{number}@example.jp")
    assert (caught.value.reply.code, caught.value.reply.enhanced) == ("553", "5.1.3")


def test_a_final_newline_is_not_part_of_a_number() -> None:
    # Found by the fuzzer: "$" in the pattern matched before a trailing newline.
    with pytest.raises(Refusal):
        parse_number("0312345678\n", "JP")


def _refusal(address: str, entry_index: int | None = None) -> str | None:
    r = parse_recipient(address, POLICY.fax_address, "JP")
    assert r is not None
    entry = POLICY.senders[entry_index] if entry_index is not None else None
    try:
        check_destination(r.number, POLICY, entry)
    except Refusal as refusal:
        assert refusal.reply.code == "550" and refusal.reply.enhanced == "5.7.1"
        return refusal.reply.text
    return None


def test_destination_rules() -> None:
    assert _refusal("fax+0312345678@example.jp") is None
    assert "premium rate" in str(_refusal("fax+0990123456@example.jp"))
    assert str(_refusal("fax+0990123456@example.jp")).startswith("fax number +81990123456")
    assert "emergency" in str(_refusal("fax+110@example.jp"))
    assert "emergency" in str(_refusal("fax+119@example.jp"))
    assert "international" in str(_refusal("fax++14155550100@example.jp"))
    assert "denied" in str(_refusal("fax+0333331234@example.jp"))


def test_sender_rules_narrow_and_widen() -> None:
    assert _refusal("fax++14155550100@example.jp", 1) is None
    assert "denied" in str(_refusal("fax+05012345678@example.jp", 1))
    assert _refusal("fax+05012345678@example.jp", 0) is None
