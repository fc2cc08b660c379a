"""The queue's policy keys (lines, retry, quiet_hours, send_later) and the queue's layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from faxmail.core.policy import Policy
from faxmail.core.queuepolicy import DialLine, Fallback
from faxmail.core.yamlfile import ConfigError, parse_yaml
from faxmail.queue.lines import line_for, lines_of
from faxmail.queue.model import Line

ROOT = Path(__file__).resolve().parent.parent
LINES = """\
lines:
  - name: office
    channel: "PJSIP/{number}@ata"
  - name: sip
    channel: "PJSIP/{number}@trunk"
    channels: 4
    prefixes: ["+1", "+44"]
  - name: us-east
    channel: "PJSIP/{number}@east"
    channels: 2
    prefixes: ["+1212"]
"""


def test_no_new_keys_is_one_line_with_one_channel() -> None:
    policy = parse_yaml("fax: {channel: 'PJSIP/{number}@pstn'}\n", Policy, "p.yaml")
    assert policy.dial_lines() == (DialLine(name="default", channel="PJSIP/{number}@pstn"),)
    assert lines_of(policy) == (Line("default", 1),)
    assert line_for("+81312345678", policy) == "default"
    assert policy.retry.max_attempts is None and policy.retry.fallbacks == ()
    assert policy.quiet_hours == ()
    assert policy.send_later.enabled and policy.send_later.max_ahead_hours == 168


def test_lines_and_the_longest_prefix() -> None:
    policy = parse_yaml(LINES, Policy, "p.yaml")
    assert lines_of(policy) == (Line("office", 1), Line("sip", 4), Line("us-east", 2))
    assert line_for("+81312345678", policy) == "office"
    assert line_for("+442071234567", policy) == "sip"
    assert line_for("+13105551234", policy) == "sip"
    assert line_for("+12125551234", policy) == "us-east"


def test_retry_and_quiet_hours_read() -> None:
    policy = parse_yaml(
        "retry:\n  max_attempts: 4\n  fallbacks: [{ecm: false}, {max_rate: 9600, t38: false}]\n"
        "quiet_hours:\n"
        '  - {prefixes: ["+81"], from: "21:00", to: "08:00", timezone: Asia/Tokyo}\n'
        '  - {from: "18:00", to: "24:00", timezone: Europe/Berlin}\n',
        Policy,
        "p.yaml",
    )
    assert policy.retry.fallbacks == (Fallback(ecm=False), Fallback(max_rate=9600, t38=False))
    night, evening = policy.quiet_hours
    assert (night.start.hour, night.end.hour, night.prefixes) == (21, 8, ("+81",))
    assert (evening.end.hour, evening.end.minute, evening.prefixes) == (0, 0, ())


@pytest.mark.parametrize(
    ("text", "path", "line", "words"),
    [
        ("lines:\n  - {name: a, channel: 'PJSIP/x'}\n", "lines[0].channel", 2, "{number}"),
        (
            "lines:\n  - {name: a, channel: 'P/{number}', channels: 0}\n",
            "lines[0].channels",
            2,
            "greater than or equal to 1",
        ),
        (
            "lines:\n  - {name: a, channel: 'P/{number}', prefixes: ['81']}\n",
            "lines[0].prefixes",
            2,
            "E.164 prefix",
        ),
        (
            "lines:\n  - {name: a, channel: 'P/{number}', prefixes: ['+81']}\n",
            "lines",
            1,
            "one line needs no prefixes",
        ),
        (
            "lines:\n  - {name: a, channel: 'P/{number}'}\n  - {name: a, channel: 'Q/{number}'}\n",
            "lines",
            1,
            "unique",
        ),
        (
            "lines:\n  - {name: a, channel: 'P/{number}'}\n"
            "  - {name: b, channel: 'Q/{number}', prefixes: ['+1']}\n"
            "  - {name: c, channel: 'R/{number}', prefixes: ['+1']}\n",
            "lines",
            1,
            "prefix +1 is on two lines: b, c",
        ),
        ("retry:\n  fallbacks: [{}]\n", "retry.fallbacks[0]", 2, "at least one of ecm"),
        ("retry:\n  fallbacks: [{max_rate: 9601}]\n", "retry.fallbacks[0].max_rate", 2, "9600"),
        ("retry:\n  busy_jitter: 2\n", "retry.busy_jitter", 2, "less than or equal"),
        ("retry:\n  max_attempts: 0\n", "retry.max_attempts", 2, "greater than or equal"),
        ("retry:\n  retries: 3\n", "retry.retries", 2, "not permitted"),
        (
            "quiet_hours:\n  - from: 21:00\n    to: '08:00'\n    timezone: Asia/Tokyo\n",
            "quiet_hours[0].from",
            2,
            "in quotes",
        ),
        (
            "quiet_hours:\n  - {from: '21:00', to: '8:60', timezone: Asia/Tokyo}\n",
            "quiet_hours[0].to",
            2,
            "not a time",
        ),
        (
            "quiet_hours:\n  - {from: '21:00', to: '08:00', timezone: Asia/Tokio}\n",
            "quiet_hours[0].timezone",
            2,
            "unknown time zone",
        ),
        (
            "quiet_hours:\n  - {from: '21:00', to: '21:00', timezone: UTC}\n",
            "quiet_hours[0]",
            2,
            "the same time",
        ),
        ("quiet_hours:\n  - {from: '21:00', to: '08:00'}\n", "quiet_hours[0].timezone", 2, "req"),
        ("send_later:\n  max_ahead_hours: 0\n", "send_later.max_ahead_hours", 2, "greater"),
        ("send_later:\n  timezone: Nowhere\n", "send_later.timezone", 2, "unknown time zone"),
    ],
)
def test_errors_name_key_and_line(text: str, path: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, Policy, "p.yaml")
    problems = caught.value.problems
    assert any(p.path == path and p.line == line and words in p.message for p in problems), problems


def test_the_commented_example_in_etc_policy_yaml_is_valid() -> None:
    text = (ROOT / "etc" / "policy.yaml").read_text()
    start = text.index("#lines:")
    block = "\n".join(re.sub(r"^#", "", line) for line in text[start:].splitlines())
    policy = parse_yaml(block, Policy, "etc/policy.yaml (queue keys uncommented)")
    assert [line.name for line in policy.lines] == ["office", "sip"]
    assert len(policy.retry.fallbacks) == 3
    assert policy.quiet_hours[0].timezone == "Asia/Tokyo"


def test_the_queue_imports_only_core_and_store() -> None:
    package = ROOT / "milter" / "faxmail"
    for source in sorted((package / "queue").glob("*.py")):
        for name in _imports(source):
            if name.startswith("faxmail."):
                assert name.startswith(("faxmail.core.", "faxmail.store.", "faxmail.queue.")), (
                    f"{source.name} imports {name}"
                )


def _imports(source: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names
