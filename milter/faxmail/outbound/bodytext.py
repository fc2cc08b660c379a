"""The mail's own text, for a body page or the cover sheet: decoded, HTML made text, trimmed.

- Which part: the first text/plain or text/html part that is not an attachment (no
  Content-Disposition: attachment, no file name), outside attached mails; in a
  multipart/alternative the text/plain one. Text *attachments* are documents, not the body.
- Charsets: whatever Python decodes, with the Japanese ones read by their supersets as mail
  programs write them (Shift_JIS as cp932, ISO-2022-JP with its extensions); an unknown
  charset is read as UTF-8; undecodable bytes become U+FFFD rather than a refusal.
- HTML becomes text with html.parser: nothing is fetched (no images, styles or links are
  followed), scripts and styles are dropped, block elements become line breaks.
- Trimmed: the signature from the first `-- ` line on (or `--`, as some programs send it),
  a quoted reply at the end (`>` lines and the "On ... wrote:" / "-----Original
  Message-----" line that starts them).
"""

from __future__ import annotations

import codecs
import email.message
import html.parser
import re
import unicodedata

from faxmail.core.headertext import decode_header_text

MAX_BODY_BYTES = 1_000_000  # decoded part; a body longer than the page limit is refused anyway
MAX_DEPTH = 20

# Mail programs label text by a charset whose superset they actually write.
_CHARSETS = {
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "csiso2022jp": "iso2022_jp_ext",
    "euc-jp": "euc_jis_2004",
    "x-euc-jp": "euc_jis_2004",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "us-ascii": "utf-8",  # 8-bit bytes in "ASCII" text are most often UTF-8
}
_REPLY_HEADER = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|forwarded message|元のメッセージ|転送メッセージ)\s*-*"
    r"|on .{1,200} wrote:|.{1,200}(?:wrote|さんは書きました)\s*[:：]"  # noqa: RUF001
    r"|\d{4}[/年-]\d{1,2}[/月-]\d{1,2}.{0,200}[:：])\s*$",  # noqa: RUF001
    re.IGNORECASE,
)
_FORWARDED_FROM = re.compile(r"^(from|差出人|送信者)\s*[:：]", re.IGNORECASE)  # noqa: RUF001
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")


def mail_text(message: email.message.Message) -> str:
    """The text to fax of `message`: "" when it has none."""
    part = _body_part(message)
    if part is None:
        return ""
    text = _decoded(part)
    if part.get_content_type() == "text/html":
        text = html_to_text(text)
    return trim(text)


def _body_part(message: email.message.Message) -> email.message.Message | None:
    stack: list[tuple[email.message.Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        ctype = part.get_content_type()
        if part.is_multipart():
            if not ctype.startswith("multipart/") or depth >= MAX_DEPTH:
                continue  # an attached mail's text is someone else's
            children = [c for c in part.get_payload() if isinstance(c, email.message.Message)]
            if ctype == "multipart/alternative":
                plain = [c for c in children if c.get_content_type() == "text/plain"]
                children = plain[:1] or children
            stack.extend((child, depth + 1) for child in reversed(children))
        elif ctype in ("text/plain", "text/html") and not _is_attachment(part):
            return part
    return None


def _is_attachment(part: email.message.Message) -> bool:
    disposition = str(part.get("content-disposition", "")).split(";", 1)[0].strip().lower()
    if disposition == "attachment":
        return True
    name = part.get_param("filename", header="content-disposition") or part.get_param("name")
    return bool(name)


def _decoded(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    data = payload[:MAX_BODY_BYTES] if isinstance(payload, bytes) else b""
    charset = decode_header_text(str(part.get_content_charset() or "utf-8"), limit=40).lower()
    codec = _CHARSETS.get(charset, charset)
    try:
        codecs.lookup(codec)
    except LookupError:
        codec = "utf-8"
    return data.decode(codec, "replace")


def trim(text: str) -> str:
    """Normalised lines without the signature and a quoted reply at the end."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    raw = text.split("\n")
    # The signature separator is "-- " (RFC 3676 4.3); some programs drop its space.
    cut = next((n for n, line in enumerate(raw) if line in ("-- ", "--")), len(raw))
    lines = [_CONTROL.sub("", line.expandtabs(4)).rstrip() for line in raw[:cut]]
    lines = _without_quoted_tail(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


def _without_quoted_tail(lines: list[str]) -> list[str]:
    """Drop a reply's quote at the end: the `>` lines there, and the line introducing them."""
    for index, line in enumerate(lines):
        if _REPLY_HEADER.match(line) and _only_quote_after(lines[index + 1 :]):
            return lines[:index]
    end = len(lines)
    while end and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    return lines[:end] if end < len(lines) else lines


def _only_quote_after(rest: list[str]) -> bool:
    """Below an "Original Message" line comes the old mail (headers, then text): all of it is
    quote. Below an "On ... wrote:" line, only `>` lines are."""
    text = [line for line in rest if line.strip()]
    return not text or all(line.startswith(">") for line in text) or _looks_forwarded(text)


def _looks_forwarded(text: list[str]) -> bool:
    head = text[:4]
    return any(_FORWARDED_FROM.match(line) for line in head)


# --- HTML ------------------------------------------------------------------------------------

_BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset"),
        *("figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6"),
        *("header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "ul"),
    }
)
_SKIPPED = frozenset({"script", "style", "head", "title", "template", "noscript", "svg"})


_BREAK, _PARAGRAPH = "\x00", "\x01"  # a line break / an empty line, where blocks meet
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "pre"})


class _TextCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.pre = 0

    def _boundary(self, tag: str) -> None:
        self.parts.append(_PARAGRAPH if tag in _PARAGRAPHS else _BREAK)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append(_BREAK + "・ ")
        elif tag in ("td", "th"):
            self.parts.append("  ")
        elif tag in _BLOCKS:
            self._boundary(tag)
        if tag == "pre":
            self.pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS and tag != "li":  # an item ends where the next one starts
            self._boundary(tag)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        self.parts.append(data if self.pre else re.sub(r"[ \t\r\n\f]+", " ", data))


def _breaks(run: re.Match[str]) -> str:
    return "\n\n" if _PARAGRAPH in run.group(0) else "\n"


def html_to_text(source: str) -> str:
    """The text a reader sees, one paragraph a line; nothing referenced is ever loaded."""
    collector = _TextCollector()
    collector.feed(source)
    collector.close()
    text = (
        "".join(collector.parts).replace(_BREAK + " ", _BREAK).replace(_PARAGRAPH + " ", _PARAGRAPH)
    )
    text = re.sub(r" *[\x00\x01][\x00\x01 ]*", _breaks, text)
    lines = [line.strip(" ") for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
