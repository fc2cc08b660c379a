"""The pages faxmail writes itself: a cover sheet (FAX送付状) and the mail's text.

`FrontMatter` says what they hold (typed values from the decision); `front_pages` lays them
out. The cover sheet is one page: its template's lines (core/covertemplate.py), and at
`$body` as much of the mail's text as fits; the rest follows on text pages. The total page
count is on the cover, so it is laid out once more when the documents' pages are known.
Every value from the mail is drawn as text: it is never read as template or layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from faxmail.core.covertemplate import TemplateLine, field_names, fill
from faxmail.render.textlayout import wrap
from faxmail.render.textpages import (
    Geometry,
    Line,
    PageLines,
    height_of,
    measure_title,
    paginate,
    text_lines,
)

# A page holds 41 lines of at most ~90 characters (text_lines at 11 pt): these bound it above.
MAX_CHARS_PER_PAGE, MAX_LINES = 6000, 60
_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class FrontMatter:
    """What faxmail adds in front of the documents."""

    cover: tuple[TemplateLine, ...] | None = None  # the parsed template; None: no cover sheet
    fields: Mapping[str, str] = field(default_factory=dict)  # cover fields but pages and body
    cover_text: str = ""  # the mail's text on the cover sheet (continued on text pages)
    body: str = ""  # the mail's text on pages of its own (after the cover sheet)

    @property
    def empty(self) -> bool:
        return self.cover is None and not self.body

    def surely_more_than(self, pages: int) -> bool:
        """More text than `pages` pages can hold, told without laying it out (a huge body
        is refused at once, not wrapped first)."""
        text = self.body + self.cover_text
        return len(text) > pages * MAX_CHARS_PER_PAGE or text.count("\n") > pages * MAX_LINES


def front_pages(front: FrontMatter, geometry: Geometry, document_pages: int) -> list[PageLines]:
    """The cover sheet and text pages, their count on the cover (total with the documents)."""
    total = document_pages + 1
    for _ in range(3):  # a longer count could wrap a line: lay out until the count holds
        pages = _layout(front, geometry, total)
        if len(pages) + document_pages == total:
            return pages
        total = len(pages) + document_pages
    return pages


def _layout(front: FrontMatter, geometry: Geometry, total: int) -> list[PageLines]:
    body = text_lines(front.body, geometry) if front.body else []
    if front.cover is None:
        return paginate(body, geometry)
    values = {name: _ONE_LINE.sub(" ", value).strip() for name, value in front.fields.items()}
    values["pages"] = str(total)
    above: list[Line] = []
    below: list[Line] = []
    text_at: list[Line] | None = None
    for template_line in front.cover:
        target = above if text_at is None else below
        if template_line.kind == "body":
            text_at = below
            continue
        target.extend(_cover_lines(template_line, values, geometry))
    carried = text_lines(front.cover_text, geometry) if front.cover_text else []
    room = geometry.text_height - height_of(above) - height_of(below)
    fitting, rest = _split(carried, room)
    cover = PageLines(tuple(_split(above + fitting + below, geometry.text_height)[0]))
    return [cover, *paginate(rest + body, geometry)] if rest or body else [cover]


def _cover_lines(line: TemplateLine, values: dict[str, str], geometry: Geometry) -> list[Line]:
    if line.kind in ("rule", "blank"):
        return [Line(line.kind)]
    names = field_names(line)
    if names and not any(values.get(name) for name in names):
        return []  # "Company: $sender_company" without a company: no line at all
    text = fill(line, values)
    if line.kind == "title":
        return [Line("title", part) for part in wrap(text, geometry.text_width, measure_title)]
    return text_lines(text, geometry)


def _split(lines: list[Line], room: int) -> tuple[list[Line], list[Line]]:
    """The lines that fit into `room` px, and the rest (an admin template longer than a page
    is cut at the page's end)."""
    taken: list[Line] = []
    for line in lines:
        if height_of([*taken, line]) > room:
            break
        taken.append(line)
    return taken, lines[len(taken) :]
