"""Text → lines that fit a width, with Japanese line breaking; pure (the width is a function).

Breaks: at spaces, and between any two characters where either is CJK (Japanese has no
spaces); a word wider than the line is cut. Kinsoku (JIS X 4051, the simple form): a closing
bracket, a comma or full stop, a small kana or a prolonged-sound mark never starts a line —
it hangs in the right margin at the end of the line before (burasage); an opening bracket
never ends a line — it moves to the next one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

Measure = Callable[[str], float]

# never at the start of a line
NO_START = frozenset(
    "、。，．,.)）]］}｝」』】〕〉》〙〗〟’”｠»ゝゞーァィゥェォッャュョヮヵヶぁぃぅぇぉっゃゅょゎゕゖ"  # noqa: RUF001
    "ㇰㇱㇲㇳㇴㇵㇶㇷㇸㇹㇺㇻㇼㇽㇾㇿ々〻‐゠–〜～?!？！‼⁇⁈⁉・:;：；/／"  # noqa: RUF001
)
# never at the end of a line
NO_END = frozenset("([（［{｛「『【〔〈《〘〖〝‘“｟«")  # noqa: RUF001
_UNIT = re.compile(r"\s+|[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]+|.", re.DOTALL)


def is_cjk(char: str) -> bool:
    code = ord(char)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF


def _units(paragraph: str) -> Iterator[str]:
    """Pieces a line may break between: spaces, words, single CJK characters."""
    for match in _UNIT.finditer(paragraph):
        yield match.group(0)


def wrap(text: str, width: float, measure: Measure) -> list[str]:
    """Every line of `text` ("\\n" starts a new one, an empty line stays) wrapped to `width`."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(wrap_paragraph(paragraph, width, measure))
    return lines


def wrap_paragraph(paragraph: str, width: float, measure: Measure) -> list[str]:
    if not paragraph.strip():
        return [""]
    lines: list[str] = []
    line = ""
    for unit in _units(paragraph):
        if unit.isspace():
            if line and measure(line + unit) <= width:
                line += unit
            elif line:
                lines.append(line.rstrip())
                line = ""
            continue
        if measure(line + unit) <= width:
            line += unit
            continue
        if line and unit[0] in NO_START:
            # hang the closing mark at the end of this line; a word after it goes on
            line += unit[0]
            unit = unit[1:]
            if not unit:
                continue
        if line:
            line, carried = _move_opening(line)
            if line.strip():
                lines.append(line.rstrip())
            line = carried
        while measure(line + unit) > width and len(unit) > 1:  # a word wider than the line
            cut = _fitting(line, unit, width, measure)
            lines.append(line + unit[:cut])
            line, unit = "", unit[cut:]
        line += unit
    if line.strip():
        lines.append(line.rstrip())
    return lines or [""]


def _move_opening(line: str) -> tuple[str, str]:
    """An opening bracket at the end of `line` goes on to the next line."""
    end = len(line)
    while end > 0 and line[end - 1] in NO_END:
        end -= 1
    if end == 0:
        return line, ""  # nothing but brackets: keep them
    return line[:end], line[end:]


def _fitting(line: str, word: str, width: float, measure: Measure) -> int:
    """How many of `word`'s characters fit after `line` (at least one)."""
    count = 1
    while count < len(word) and measure(line + word[: count + 1]) <= width:
        count += 1
    return count
