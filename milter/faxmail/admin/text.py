"""How the admin commands print: aligned columns (wide characters counted twice), state colours
only on a terminal, local times, and JSON that scripts can rely on (sorted keys, ISO 8601
times with the local offset)."""

from __future__ import annotations

import json
import os
import time
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from faxmail.store.model import JobState

_COLOURS: dict[str, str] = {
    JobState.QUEUEING: "36",
    JobState.QUEUED: "36",
    JobState.SENDING: "35",
    JobState.SENT: "32",
    JobState.FAILED: "31",
    JobState.CANCELLED: "33",
    JobState.ABANDONED: "90",
    JobState.PREVIEWED: "34",
}


def use_colour(stream: TextIO) -> bool:
    """Colour only for a person at a terminal (https://no-color.org)."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def coloured(state: str, text: str, on: bool) -> str:
    code = _COLOURS.get(state)
    return f"\x1b[{code}m{text}\x1b[0m" if on and code else text


def width(text: str) -> int:
    """Columns `text` takes in a terminal: East Asian wide characters take two."""
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return total


def clip(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` columns (… when cut)."""
    text = " ".join(text.split())
    if width(text) <= limit:
        return text
    out, used = "", 0
    for char in text:
        step = width(char)
        if used + step > limit - 1:
            break
        out += char
        used += step
    return out + "…"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: frozenset[int] = frozenset(),
    states: Sequence[str] | None = None,
    state_column: int | None = None,
    colour: bool = False,
) -> list[str]:
    """Lines of an aligned table; column `state_column` is coloured by `states[row]`."""
    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str], state: str | None) -> str:
        out = []
        for i, cell in enumerate(cells):
            pad = " " * (widths[i] - width(cell))
            text = pad + cell if i in right else cell + pad
            if state is not None and i == state_column:
                text = coloured(state, text, colour)
            out.append(text)
        return "  ".join(out).rstrip()

    lines = [line(headers, None)]
    lines += [line(r, states[n] if states else None) for n, r in enumerate(rows)]
    return lines


def local(timestamp: float | None, *, seconds: bool = True) -> str:
    if timestamp is None:
        return "-"
    return time.strftime(
        "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.localtime(timestamp)
    )


def clock(timestamp: float | None) -> str:
    """The time of day, with the date when it is not today."""
    if timestamp is None:
        return "-"
    if time.localtime(timestamp)[:3] == time.localtime()[:3]:
        return time.strftime("%H:%M:%S", time.localtime(timestamp))
    return local(timestamp)


def zone() -> str:
    """The local zone as the tables' footers name it: "JST (+0900)"."""
    now = datetime.now().astimezone()
    return f"{now.tzname()} ({now.strftime('%z')})"


def iso(timestamp: float | None) -> str | None:
    """ISO 8601 in the local zone, with its offset: "2024-05-01T14:03:22+09:00"."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def dump_json(value: Any, stream: TextIO) -> None:
    stream.write(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def size(count: int) -> str:
    return f"{count / 1000:.1f} kB" if count < 1_000_000 else f"{count / 1_000_000:.1f} MB"
