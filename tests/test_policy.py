"""The policy file: validation errors name the key path and line; reload keeps the last good."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from faxmail.core.policy import DEFAULT_POLICY_YAML, Policy
from faxmail.core.policywatch import PolicyHolder
from faxmail.core.settings import Settings, load_settings
from faxmail.core.yamlfile import ConfigError, parse_yaml

GOOD = """\
fax_address:
  domains: [example.jp]
senders:
  - address: "@example.jp"
  - address: scanner@example.jp
    proof: [network]
    networks: [192.168.10.0/24]
  - sasl_user: alice
    proof: [sasl]
"""


def test_embedded_default_allows_nobody() -> None:
    policy = parse_yaml(DEFAULT_POLICY_YAML, Policy, "default")
    assert policy.senders == ()
    assert policy.fax_address.domains == ()


def test_good_policy() -> None:
    policy = parse_yaml(GOOD, Policy, "p.yaml")
    assert [s.proof for s in policy.senders] == [("dkim",), ("network",), ("sasl",)]
    assert policy.destinations.region == "JP"


@pytest.mark.parametrize(
    ("text", "path", "line", "words"),
    [
        ("senders:\n  - address: bob\n", "senders[0].address", 2, "not an address"),
        ("senders:\n  - address: a@b.jp\n    proof: [sasl]\n", "senders[0]", 2, "needs sasl_user"),
        ("senders:\n  - address: a@b.jp\n    proof: [dns]\n", "senders[0].proof[0]", 3, "dkim"),
        ("limits:\n  per_hour: -1\n", "limits.per_hour", 2, "greater than or equal"),
        ("destinations:\n  region: XX\n", "destinations.region", 2, "unknown region"),
        ("destinations:\n  deny: ['0990']\n", "destinations.deny", 2, "E.164 prefix"),
        ("fax:\n  channel: PJSIP/x\n", "fax.channel", 2, "{number}"),
        ("limitz:\n  per_hour: 3\n", "limitz", 1, "not permitted"),
    ],
)
def test_errors_name_key_and_line(text: str, path: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, Policy, "p.yaml")
    problems = caught.value.problems
    assert any(p.path == path and p.line == line and words in p.message for p in problems), problems


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml("senders:\n  - [unclosed\n", Policy, "p.yaml")
    assert caught.value.problems[0].line is not None


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    # mtime granularity: make each write visibly newer
    stamp = path.stat().st_mtime + 1 + len(text) / 1e6
    os.utime(path, (stamp, stamp))


def test_reload_keeps_last_good(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, GOOD)
    holder = PolicyHolder(path)
    assert len(holder.current().senders) == 3
    _write(path, "senders: [garbage")
    caplog.set_level(logging.ERROR)
    assert not holder.reload()
    assert len(holder.current().senders) == 3
    assert "keeping the last good policy" in caplog.text
    _write(path, "")  # empty file: a save in progress or a truncation, not "allow nobody"
    assert not holder.reload()
    assert len(holder.current().senders) == 3
    assert "is empty; keeping the last good policy" in caplog.text
    _write(path, "senders: []\n")  # "allow nobody" is said explicitly
    assert holder.reload()
    assert holder.current().senders == ()
    path.unlink()
    assert not holder.reload()
    assert holder.current().senders == ()


def test_invalid_policy_refuses_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("senders:\n  - proof: [dkim]\n")
    with pytest.raises(ConfigError):
        PolicyHolder(path)


def test_settings_defaults_and_errors(tmp_path: Path) -> None:
    assert load_settings(None) == Settings()
    path = tmp_path / "s.yaml"
    path.write_text("socket: /tmp/x.sock\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems[0].path == "socket"
    assert caught.value.problems[0].line == 1


def test_greys_adaptive_by_default_fixed_on_request() -> None:
    assert parse_yaml(GOOD, Policy, "p.yaml").fax.greys == "adaptive"
    fixed = parse_yaml(GOOD + "fax: {greys: fixed}\n", Policy, "p.yaml")
    assert fixed.fax.greys == "fixed"
    with pytest.raises(ConfigError) as err:
        parse_yaml(GOOD + "fax: {greys: clever}\n", Policy, "p.yaml")
    assert any("fax.greys" in str(problem) for problem in err.value.problems)


def test_office_timeout_is_a_policy_key_with_bounds() -> None:
    assert parse_yaml(GOOD, Policy, "p.yaml").fax.office_timeout_s == 60
    longer = parse_yaml(GOOD + "fax: {office_timeout_s: 180}\n", Policy, "p.yaml")
    assert longer.fax.office_timeout_s == 180
    for bad in ("0", "601"):
        with pytest.raises(ConfigError) as err:
            parse_yaml(GOOD + f"fax: {{office_timeout_s: {bad}}}\n", Policy, "p.yaml")
        assert any("fax.office_timeout_s" in str(problem) for problem in err.value.problems)
