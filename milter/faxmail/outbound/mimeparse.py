"""A mail parsed into `email.message.Message`s: the stdlib's parser and result, less its cost.

The stdlib parser (compat32: tolerant, records defects, keeps 8-bit bytes) spends Python work
on every line, and a 4 MB attachment is some 50,000 base64 lines; two things here keep its
result exactly and cut a 4 MB mail's parse from 40 to 10 ms:

- Lines are handed to it in runs. A line of base64 characters only (no space, colon, hyphen
  or line end inside) is no header, no boundary, no header/body separator and no line end
  alone, and those are all the parser ever asks of a line it looks at by itself; otherwise it
  joins lines. So a run of such lines is handed over as one item: it meets each question as
  its first line would, and is joined as its lines would be.
- The parser finds "the line end that ends this part" with a regular expression that tries
  each line end in the part (15 ms for a 4 MB part); `_EndOfText` asks the last two characters.

tests/test_mimeparse.py checks both against the stdlib's own result on generated mails.
"""

from __future__ import annotations

import email.feedparser
import email.message
import email.policy
import io
import re
from typing import IO, Any

from faxmail.core.replies import MIME_TOO_DEEP, Refusal

_stdlib: Any = email.feedparser  # the names used here are the parser's own, not in its stubs

MAX_DEPTH = 20  # extract.py refuses deeper structures; the parser itself stops far deeper
READ_CHARS = 64 * 1024

# A run of base64-only lines | one line | an unterminated last line (only at the end).
_ITEMS = re.compile(r"(?:[A-Za-z0-9+/=]+\r?\n)+|[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


class _LinesInRuns(_stdlib.BufferedSubFile):  # type: ignore[misc]
    """The parser's line buffer, fed runs of base64 lines as single items."""

    def __init__(self) -> None:
        super().__init__()
        # after the last LF, in pieces (joined once a LF comes: a long line costs no more
        # than a short one); a CR at its end may yet be the first half of CRLF
        self._unfinished: list[str] = []

    def push(self, data: str) -> None:
        whole = data.rfind("\n") + 1
        if not whole:
            self._unfinished.append(data)
            return
        lines = "".join(self._unfinished) + data[:whole]
        self._unfinished = [data[whole:]]
        self.pushlines(_ITEMS.findall(lines))

    def close(self) -> None:
        rest = "".join(self._unfinished)
        self._unfinished = []
        if rest:
            self.pushlines(_ITEMS.findall(rest))
        super().close()


class _EndOfText:
    """`NLCRE_eol.search(text)`, looking at the last two characters only (the pattern is
    anchored at the end and matches at most two); the parser uses only the matched text."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern

    def search(self, text: str) -> re.Match[str] | None:
        return self.pattern.search(text[-2:])


if not isinstance(_stdlib.NLCRE_eol, _EndOfText):  # once, for the whole process
    _stdlib.NLCRE_eol = _EndOfText(_stdlib.NLCRE_eol)


def parse_message(raw: bytes) -> email.message.Message:
    """Parse a whole mail the tolerant way (compat32: fast, records defects, keeps 8-bit bytes)."""
    return parse_message_file(io.BytesIO(raw))


def parse_message_file(mail: IO[bytes]) -> email.message.Message:
    """Parse the mail in a seekable binary file, fed to the parser in pieces (never read whole).

    The stdlib parser recurses once per nesting level and hits the recursion limit around
    300-1000 levels; such a mail is refused as too deeply nested instead of crashing the step.
    """
    mail.seek(0)
    # As BytesParser does, but newline="": line ends stay as sent, as in message_from_bytes.
    text = io.TextIOWrapper(mail, encoding="ascii", errors="surrogateescape", newline="")
    parser: Any = email.feedparser.FeedParser(policy=email.policy.compat32)
    parser._input = _LinesInRuns()  # before the first feed: the parser reads only from it
    try:
        while data := text.read(READ_CHARS):
            parser.feed(data)
        message: email.message.Message = parser.close()
        return message
    except RecursionError:
        raise Refusal(MIME_TOO_DEEP.format(limit=MAX_DEPTH)) from None
    finally:
        text.detach()  # leaves `mail` open: it belongs to the caller
