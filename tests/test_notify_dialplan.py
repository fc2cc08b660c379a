"""The shipped dialplan's System() lines, run the way Asterisk runs them — and checked.

`Dialplan` reads asterisk/extensions.conf (the file Asterisk loads, not a copy), substitutes
channel variables as Asterisk 22 does (${VAR}, ${FILTER(...)}, ${BASE64_ENCODE(...)},
${CALLERID(num|name)}; innermost first, a function's arguments up to its last ')'), decodes
backslash escapes as app_system does, and hands the line to /bin/sh -c — the same argv
faxmail-notify gets from a real System(). The end-to-end tests with a real Asterisk are in
the Asterisk harness; these prove what notify does with what the dialplan gives it.
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

EXTENSIONS_CONF = Path(__file__).parent.parent / "asterisk" / "extensions.conf"

#: Globals the admin writes; the only values allowed unfiltered in a System() line.
ADMIN_GLOBALS = frozenset({"FAXMAIL_NOTIFY", "FAXMAIL_SETTINGS"})

_EXTEN = re.compile(r"^\s*(?:exten\s*=>\s*([^,]+),|same\s*=>\s*)([^,(]+)(?:\(([^)]*)\))?,(.*)$")


def parse_dialplan(text: str) -> dict[str, list[tuple[str, str, str]]]:
    """context → [(extension, label, application call)] in file order."""
    contexts: dict[str, list[tuple[str, str, str]]] = {}
    context, exten = "", ""
    for raw in text.splitlines():
        line = re.split(r"(?<!\\);", raw, maxsplit=1)[0].rstrip()  # ';' starts a comment
        header = re.match(r"^\[([^\]]+)\]", line)
        if header:
            context = header.group(1)
            contexts[context] = []
            continue
        match = _EXTEN.match(line)
        if match:
            exten = match.group(1).strip() if match.group(1) else exten
            contexts[context].append((exten, match.group(3) or "", match.group(4)))
    return contexts


def filter_chars(allowed: str) -> set[str]:
    """The characters FILTER(allowed,...) keeps, parsed as func_strings.c does.

    A '-' between two characters is a range; a '-' last in the list is no character.
    """
    keep: set[str] = set()
    index = 0
    while index < len(allowed):
        first = allowed[index]
        index += 1
        if index < len(allowed) and allowed[index] == "-":
            last = allowed[index + 1] if index + 1 < len(allowed) else first
            index += 2
            keep.update(chr(c) for c in range(ord(first), ord(last) + 1))
        else:
            keep.add(first)
    return keep


def _call(name: str, args: str, variables: Mapping[str, str]) -> str:
    if name == "FILTER":
        allowed, _, value = args.partition(",")
        keep = filter_chars(allowed)
        return "".join(c for c in value if c in keep)
    if name == "BASE64_ENCODE":
        return base64.b64encode(args.encode("utf-8")).decode("ascii")
    if name == "CALLERID":
        return variables.get(f"CALLERID({args})", "")
    raise AssertionError(f"dialplan function {name} is not emulated")


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Asterisk's ${...} substitution (no $[...] expressions: System() lines have none)."""
    out, index = [], 0
    while index < len(text):
        start = text.find("${", index)
        if start < 0:
            out.append(text[index:])
            break
        out.append(text[index:start])
        depth, end = 1, start + 2
        while depth:
            if text.startswith("${", end):
                depth, end = depth + 1, end + 2
            elif text[end] == "}":
                depth, end = depth - 1, end + 1
            else:
                end += 1
        inner = substitute(text[start + 2 : end - 1], variables)
        if "(" in inner:
            name, _, rest = inner.partition("(")
            out.append(_call(name, rest[: rest.rfind(")")], variables))
        else:
            out.append(variables.get(inner, ""))
        index = end
    return "".join(out)


def decode_escapes(line: str) -> str:
    """app_system runs ast_str_get_encoded_str() over the substituted line."""
    table = {"n": "\n", "r": "\r", "t": "\t"}
    return re.sub(r"\\(.)", lambda m: table.get(m.group(1), m.group(1)), line)


class Dialplan:
    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.contexts = parse_dialplan(EXTENSIONS_CONF.read_text())
        self.globals = dict(re.findall(r"^([A-Z_]+)=(.*)$", _section("globals"), re.M))
        self.globals.update(overrides or {})

    def system(self, context: str, exten: str) -> str:
        """The argument of the System() labelled `notify` in context/exten."""
        calls = [
            call
            for ext, label, call in self.contexts[context]
            if ext == exten and label == "notify" and call.startswith("System(")
        ]
        assert len(calls) == 1, f"{context},{exten}(notify): {len(calls)} System() calls"
        return calls[0][len("System(") : -1]

    def command(self, context: str, exten: str, channel: Mapping[str, str]) -> str:
        """The command line System() would hand to /bin/sh."""
        line = substitute(self.system(context, exten), {**self.globals, **channel})
        return decode_escapes(line)

    def run(self, context: str, exten: str, channel: Mapping[str, str]) -> Ran:
        """Run the System() of context/exten with these channel variables, through /bin/sh."""
        line = self.command(context, exten, channel)
        result = subprocess.run(
            ["/bin/sh", "-c", line], capture_output=True, text=True, timeout=120, check=False
        )
        return Ran(line, result.returncode, result.stderr)


@dataclass(frozen=True)
class Ran:
    line: str
    code: int
    stderr: str


def _section(name: str) -> str:
    text = EXTENSIONS_CONF.read_text()
    match = re.search(rf"^\[{name}\]\n(.*?)(?=^\[)", text, re.M | re.S)
    assert match, f"[{name}] missing from {EXTENSIONS_CONF}"
    return match.group(1)


# ------------------------------------------------------------------------------ the checks


def system_lines() -> list[tuple[str, str, str]]:
    plan = Dialplan()
    return [
        (context, exten, call[len("System(") : -1])
        for context, lines in plan.contexts.items()
        for exten, _, call in lines
        if call.startswith("System(")
    ]


def test_every_system_line_filters_every_value() -> None:
    """Each ${...} in a System() line is an admin global or FILTER()ed to a shell-safe set."""
    safe = set("0123456789abcdefABCDEFGHIJKLMNOPQRSTUVWXYZghijklmnopqrstuvwxyz+/=._x")
    lines = system_lines()
    assert {(c, e) for c, e, _ in lines} == {
        ("faxmail-send", "send"),
        ("faxmail-send", "failed"),
        ("faxmail-send", "h"),
        ("faxmail-receive", "h"),
    }
    for context, exten, line in lines:
        depth, start = 0, 0
        outer = []
        for index in range(len(line)):
            if line.startswith("${", index):
                if depth == 0:
                    start = index
                depth += 1
            elif line[index] == "}" and depth:
                depth -= 1
                if depth == 0:
                    outer.append(line[start : index + 1])
        assert outer, line
        for expr in outer:
            name = expr[2:-1]
            if name in ADMIN_GLOBALS:
                continue
            assert name.startswith("FILTER("), f"{context},{exten}: {expr} is not FILTER()ed"
            allowed = name[len("FILTER(") :].split(",", 1)[0]
            assert filter_chars(allowed) <= safe, (
                f"{context},{exten}: {allowed!r} lets through too much"
            )
            if "BASE64_ENCODE" in expr:
                assert allowed == "A-Za-z0-9+/=", expr


def test_free_text_is_base64_encoded() -> None:
    """Caller id, station id and fax error texts reach System() only base64-encoded."""
    free_text = (
        "REMOTESTATIONID",
        "FAXERROR",
        "FAXSTATUSSTRING",
        "CALLERID(num)",
        "CALLERID(name)",
    )
    for context, exten, line in system_lines():
        for variable in free_text:
            for use in re.finditer(re.escape("${" + variable + "}"), line):
                before = line[: use.start()]
                assert before.endswith("${BASE64_ENCODE(."), (context, exten, variable)


@pytest.mark.parametrize(
    ("allowed", "value", "kept"),
    [
        ("0-9a-f", "0123abcdefg;rm -rf", "0123abcdeff"),
        ("0-9+", "+81 3-1234;`id`", "+8131234"),
        ("A-Za-z0-9+/=", "QUJD$(id)==", "QUJDid=="),
        ("0-9A-Za-z._-", "host-1700000000.12", "host1700000000.12"),  # a trailing '-' is no char
    ],
)
def test_filter_emulation(allowed: str, value: str, kept: str) -> None:
    assert substitute("${FILTER(" + allowed + ",${V})}", {"V": value}) == kept


def test_substitution_takes_the_last_parenthesis() -> None:
    channel = {"CALLERID(num)": "a)b,c"}
    encoded = substitute("${BASE64_ENCODE(.${CALLERID(num)})}", channel)
    assert base64.b64decode(encoded) == b".a)b,c"
