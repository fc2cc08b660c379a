"""Asterisk call files: render from checked values, read back as pbx_spool reads them.

pbx_spool reads a call file line by line: `;` starts a comment unless written `\\;`, `#` after
whitespace starts one, and lines over 1024 bytes are skipped. Hence every value is matched
against a strict allow-list before it is written; there is no quoting or escaping to get wrong,
and no mail text can ever pass (the caller only has job ids, dialled digits and our own paths
to give). How a call file reaches Asterisk whole is asterisk/spool.py's part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from faxmail.core.queuepolicy import Fallback

MAX_LINE = 1024  # pbx_spool skips longer lines; ours stay below, newline included

_CHANNEL = re.compile(r"[A-Za-z0-9/@+._:-]{1,200}")
_DIALPLAN_NAME = re.compile(r"[A-Za-z0-9_+-]{1,79}")  # AST_MAX_CONTEXT/EXTENSION are 80
_VARIABLE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# Single inner spaces are allowed (a fax header such as "ACME Corp"); never at the ends, where
# pbx_spool would trim them, and never before a '#' or ';', which are not allowed at all.
_VARIABLE_VALUE = re.compile(r"(?=.{0,900}\Z)(?:[A-Za-z0-9/._:+@=-]+(?: [A-Za-z0-9/._:+@=-]+)*)?")
_CALLER_ID = re.compile(r'"[A-Za-z0-9 ._-]{0,40}" <[0-9]{1,20}>')

# (field, lowest, highest): a zero RetryTime or WaitTime would make Asterisk redial in a loop.
_NUMBERS = (
    ("priority", 1, 1000),
    ("max_retries", 0, 100),
    ("retry_time", 10, 86400),
    ("wait_time", 5, 600),
)


@dataclass(frozen=True)
class CallFile:
    channel: str  # e.g. "PJSIP/0123456789@trunk", "Local/rx@fax-rx"
    context: str
    extension: str
    priority: int = 1
    max_retries: int = 2  # N retries = N + 1 attempts
    retry_time: int = 300  # seconds, start to start
    wait_time: int = 45  # ring timeout in seconds
    caller_id: str | None = None  # '"name" <digits>'
    archive: bool = True  # keep it in outgoing_done/ with its final Status:
    variables: Mapping[str, str] = field(default_factory=dict)  # Setvar: NAME=value

    def __post_init__(self) -> None:
        # A private read-only copy: the caller's dict can no longer change after the check.
        object.__setattr__(self, "variables", MappingProxyType(dict(self.variables)))
        _check(self)


def _check(cf: CallFile) -> None:
    """Raise ValueError naming the first field that is not on its allow-list."""
    _match("channel", _CHANNEL, cf.channel)
    _match("context", _DIALPLAN_NAME, cf.context)
    _match("extension", _DIALPLAN_NAME, cf.extension)
    for name, lowest, highest in _NUMBERS:
        value = getattr(cf, name)
        if type(value) is not int or not lowest <= value <= highest:
            raise ValueError(f"call file {name} must be an integer from {lowest} to {highest}")
    if cf.caller_id is not None:
        _match("caller_id", _CALLER_ID, cf.caller_id)
    if type(cf.archive) is not bool:
        raise ValueError("call file archive must be a bool")
    for key, value in cf.variables.items():
        _match("variable name", _VARIABLE_NAME, key)
        _match(f"variable {key}", _VARIABLE_VALUE, value)


def _match(what: str, pattern: re.Pattern[str], value: object) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        # repr() and a bound: the offending value may itself be hostile or huge.
        raise ValueError(f"call file {what} not allowed: {value!r:.80}")


def fallback_vars(fallback: Fallback | None) -> dict[str, str]:
    """Setvar:s for a fallback: policy values only (yes/no, a bit rate), never mail text."""
    if fallback is None:
        return {}
    found = {}
    if fallback.ecm is not None:
        found["FAXMAIL_ECM"] = "yes" if fallback.ecm else "no"
    if fallback.max_rate is not None:
        found["FAXMAIL_MAXRATE"] = str(int(fallback.max_rate))
    if fallback.t38 is not None:
        found["FAXMAIL_T38"] = "yes" if fallback.t38 else "no"
    return found


def render_callfile(cf: CallFile) -> bytes:
    """The call file's bytes; every value re-checked, every line shorter than 1024 bytes."""
    _check(cf)
    lines = [f"Channel: {cf.channel}"]
    if cf.caller_id is not None:
        lines.append(f"CallerID: {cf.caller_id}")
    lines += [
        f"MaxRetries: {cf.max_retries}",
        f"RetryTime: {cf.retry_time}",
        f"WaitTime: {cf.wait_time}",
        f"Context: {cf.context}",
        f"Extension: {cf.extension}",
        f"Priority: {cf.priority}",
        f"Archive: {'yes' if cf.archive else 'no'}",
    ]
    lines += [f"Setvar: {key}={cf.variables[key]}" for key in sorted(cf.variables)]
    for line in lines:
        if len(line) + 1 >= MAX_LINE:
            raise ValueError(f"call file line too long: {line[:40]!r}...")
    return ("\n".join(lines) + "\n").encode("ascii")


def parse_callfile(data: bytes) -> list[tuple[str, str]]:
    """(key, value) pairs as pbx_spool reads them: comments, skipped lines and trimming alike."""
    pairs = []
    for raw in data.split(b"\n"):
        if len(raw) + 1 > MAX_LINE:
            continue
        line = raw.decode("utf-8", "replace")
        # '#' at the start or after a blank is a comment; then ';' is one unless escaped '\;'.
        line = re.split(r"(?:^|(?<=[ \t]))#", line, maxsplit=1)[0]
        kept, rest = [], line
        while (at := rest.find(";")) >= 0:
            if at > 0 and rest[at - 1] == "\\":
                kept.append(rest[: at - 1] + ";")
                rest = rest[at + 1 :]
            else:
                rest = rest[:at]
                break
        line = ("".join(kept) + rest).rstrip("".join(map(chr, range(33))))
        key, colon, value = line.partition(":")
        if not line or not colon:
            continue  # pbx_spool warns and skips a line without ':'
        pairs.append((key, value.lstrip("".join(map(chr, range(33))))))
    return pairs
