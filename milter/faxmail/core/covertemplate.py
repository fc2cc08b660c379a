"""The cover sheet's template: a few lines of text with `$fields` (README "The cover sheet").

    # FAX送付状              a title line (large, centred)
    ---                      a horizontal rule
    宛先: $to_number         a text line; its fields are filled in, then it is wrapped
    $body                    alone on its line: the mail's text fills the rest of the page
    (empty line)             an empty line

A line's kind is read from the template as the admin wrote it, before any field is filled in,
so text from the mail (a Subject starting with "#", a "$body" in it) is drawn as it is and never
changes the layout. Fields are filled with string.Template.safe_substitute, in one pass.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal

FIELDS = (
    "date",
    "to_number",
    "sender_name",
    "sender_company",
    "sender_address",
    "subject",
    "pages",
    "body",
)
MAX_TEMPLATE_LINES = 60

LineKind = Literal["title", "rule", "text", "body", "blank"]


@dataclass(frozen=True)
class TemplateLine:
    kind: LineKind
    text: str  # the template text (fields not yet filled in); "" for rules, body, blanks


class TemplateError(ValueError):
    """A template that cannot be used; the message says which line and why."""


def parse_template(source: str) -> tuple[TemplateLine, ...]:
    lines = source.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) > MAX_TEMPLATE_LINES:
        raise TemplateError(f"{len(lines)} lines; a cover sheet has at most {MAX_TEMPLATE_LINES}")
    parsed = [_line(number, line.rstrip()) for number, line in enumerate(lines, 1)]
    if sum(line.kind == "body" for line in parsed) > 1:
        raise TemplateError("$body may appear on one line only")
    return tuple(parsed)


def _line(number: int, line: str) -> TemplateLine:
    stripped = line.strip()
    if not stripped:
        return TemplateLine("blank", "")
    if stripped == "$body" or stripped == "${body}":
        return TemplateLine("body", "")
    if set(stripped) == {"-"} and len(stripped) >= 3:
        return TemplateLine("rule", "")
    kind: LineKind = "text"
    text = line
    if stripped.startswith("#"):
        kind, text = "title", stripped.lstrip("#").strip()
    template = string.Template(text)
    if not template.is_valid():
        raise TemplateError(f"line {number}: a '$' not followed by a field name (write $$ for $)")
    for name in template.get_identifiers():
        if name not in FIELDS:
            raise TemplateError(f"line {number}: unknown field ${name} (known: {_known()})")
        if name == "body":
            raise TemplateError(f"line {number}: $body must stand alone on its line")
    return TemplateLine(kind, text)


def _known() -> str:
    return ", ".join(f"${name}" for name in FIELDS)


def fill(line: TemplateLine, fields: dict[str, str]) -> str:
    """The line's text with its fields filled in (one pass: a value is never read again)."""
    return string.Template(line.text).safe_substitute(fields)


def field_names(line: TemplateLine) -> list[str]:
    return string.Template(line.text).get_identifiers()


DEFAULT_TEMPLATES = {
    "ja": """\
# FAX送付状
---
日付: $date
宛先FAX番号: $to_number
差出人: $sender_name
会社名: $sender_company
メール: $sender_address
件名: $subject
枚数: 送付状を含め $pages 枚
---
$body
""",
    "en": """\
# FAX COVER SHEET
---
Date: $date
To fax number: $to_number
From: $sender_name
Company: $sender_company
E-mail: $sender_address
Subject: $subject
Pages: $pages including this cover sheet
---
$body
""",
}
