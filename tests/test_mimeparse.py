"""parse_message gives exactly the stdlib parser's result, on mails built to find a difference.

mimeparse.py hands the parser runs of base64 lines as one item and answers its end-of-part
search from the last two characters; both must be invisible. The reference here is the
stdlib's own parser with its own end-of-part pattern put back.
"""

from __future__ import annotations

import email.feedparser
import email.message
import email.parser
import email.policy
import io
import random
from typing import Any

import pytest

from faxmail.outbound import mimeparse
from faxmail.outbound.mimeparse import parse_message

Shape = tuple[Any, ...]


def stdlib_parse(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> email.message.Message:
    with monkeypatch.context() as patch:
        fast: Any = email.feedparser.NLCRE_eol
        assert isinstance(fast, mimeparse._EndOfText)
        patch.setattr(email.feedparser, "NLCRE_eol", fast.pattern)
        text = io.TextIOWrapper(
            io.BytesIO(raw), encoding="ascii", errors="surrogateescape", newline=""
        )
        return email.parser.Parser(policy=email.policy.compat32).parse(text)


def shape(message: email.message.Message) -> Shape:
    """Everything the parser decides: headers, structure, payloads, preamble, defects."""
    payload = message.get_payload()
    body = [shape(part) for part in payload] if message.is_multipart() else payload
    return (
        message.get_unixfrom(),
        message.items(),
        message.preamble,
        message.epilogue,
        [type(defect).__name__ for defect in message.defects],
        message.get_default_type(),
        body,
    )


# Line ends, and lines that are (nearly) base64, boundaries, headers or empty.
ENDS = ["\r\n", "\n", "\r", "\r\r\n"]
BOUNDARIES = ["b1", "AAAA", "=_x", "b1+/"]


def body_lines(rng: random.Random) -> list[str]:
    """Body text: base64 runs cut anywhere, plus the lines that must still count alone."""
    kinds = [
        lambda: "QUJD" * rng.randint(1, 20),
        lambda: "TWFu+/==",
        lambda: "",
        lambda: "plain text, with: a colon",
        lambda: " folded-looking",
        lambda: "From here on",
        lambda: "-" * rng.randint(1, 3) + rng.choice(BOUNDARIES) + rng.choice(["", "--", " "]),
        lambda: "Header-Like: value",
        lambda: "8bit \xe9\u3042",
    ]
    return [rng.choice(kinds)() for _ in range(rng.randint(0, 30))]


def part(rng: random.Random, depth: int) -> list[str]:
    """A MIME entity as lines without line ends: header block, body or nested parts."""
    roll = rng.random()
    if depth < 3 and roll < 0.35:
        boundary = rng.choice(BOUNDARIES)
        lines = [f'Content-Type: multipart/mixed; boundary="{boundary}"']
        if rng.random() < 0.8:
            lines.append("")  # sometimes no separator: a defect the parser records
        lines += body_lines(rng)  # preamble
        for _ in range(rng.randint(0, 3)):
            lines.append("--" + boundary)
            lines += part(rng, depth + 1)
        if rng.random() < 0.8:
            lines.append("--" + boundary + "--" + rng.choice(["", "  "]))
        lines += body_lines(rng)  # epilogue
        return lines
    if depth < 3 and roll < 0.45:
        kind = rng.choice(["message/rfc822", "message/delivery-status"])
        return [f"Content-Type: {kind}", "", *part(rng, depth + 1), "", *body_lines(rng)]
    headers = [
        rng.choice(["Content-Type: application/pdf", "Content-Type: text/plain"]),
        "Content-Transfer-Encoding: base64",
    ]
    separator = [""] if rng.random() < 0.85 else []
    return [*headers[: rng.randint(0, 2)], *separator, *body_lines(rng)]


def mail(rng: random.Random) -> bytes:
    lines = ["From: a@example.jp", *part(rng, 0)]
    if rng.random() < 0.1:
        lines.insert(0, "From a@example.jp Mon Jan  1 00:00:00 2026")
    text = "".join(line + rng.choice(ENDS) for line in lines)
    if rng.random() < 0.3:
        text = text.rstrip("\r\n")  # no line end at the very end
    return text.encode("utf-8")


@pytest.mark.parametrize("read_chars", [1, 7, mimeparse.READ_CHARS])
def test_generated_mails_parse_as_the_stdlib_parses_them(
    read_chars: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small reads cut runs, CRLFs and lines between feeds: that must not matter either.
    rng = random.Random(read_chars)
    for _ in range(400 if read_chars > 1 else 60):
        raw = mail(rng)
        expected = shape(stdlib_parse(raw, monkeypatch))
        monkeypatch.setattr(mimeparse, "READ_CHARS", read_chars)
        assert shape(parse_message(raw)) == expected, raw


def test_a_big_base64_attachment_parses_as_the_stdlib_parses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded = "\r\n".join("QUJD" * 19 for _ in range(20_000))
    raw = (
        'From: a@example.jp\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{encoded}\r\n--b--\r\n"
    ).encode("ascii")
    message = parse_message(raw)
    assert shape(message) == shape(stdlib_parse(raw, monkeypatch))
    attachment = message.get_payload()[0]
    assert attachment.get_payload(decode=True) == b"ABC" * 19 * 20_000


def test_a_long_line_parses_as_the_stdlib_parses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 MB without a line end, fed in 1,000-character reads: joined once, not once a read
    monkeypatch.setattr(mimeparse, "READ_CHARS", 1000)
    raw = b"From: a@example.jp\r\nSubject: " + b"x" * 2_000_000 + b"\r\n\r\nbody\r" + b"y" * 5000
    assert shape(parse_message(raw)) == shape(stdlib_parse(raw, monkeypatch))


def test_the_end_of_part_search_matches_the_pattern_it_replaces() -> None:
    fast: Any = email.feedparser.NLCRE_eol
    for text in ["", "a", "a\r\n", "a\n", "a\r", "\r\r", "\n\r\n", "\r\n\r", "x\r\n\n"]:
        got, want = fast.search(text), fast.pattern.search(text)
        assert (got and got.group(0)) == (want and want.group(0)), text
