"""Header text: whatever bytes a mail header holds → one line of printable text, never raising.

Mail headers are attacker-controlled and, in practice, messy: RFC 2047 encoded words in any
charset (cut mid-character or mid-escape-sequence across words), ISO-2022-JP with the NEC/IBM
extensions Windows mailers use, raw 8-bit UTF-8 or Shift_JIS, raw 7-bit JIS, unknown or bogus
charsets. `decode_header_text` handles all of that and returns one honest line: controls,
line separators and bidi overrides become spaces, and the length is bounded.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Iterator

HEADER_TEXT_LIMIT = 998  # RFC 5322 line limit: a decoded value never needs more

# compat32 decodes header bytes as ASCII with surrogateescape: bytes >= 0x80 become U+DC80..DCFF.
_SURROGATE = re.compile("[\udc80-\udcff]")
# Other lone surrogates cannot stand for a byte (decoded text brings them: an RFC 2231 name in
# utf-7 or unicode_escape); surrogateescape cannot encode them, so they become "?" first (ASCII:
# the same in UTF-8, CP932 and Latin-1, whichever the escaped bytes turn out to be).
_NOT_A_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?]*)\?=")
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
_FOLDING_SPACE = re.compile(r"[ \t\r\n]*")
# Control characters, line/paragraph separators, bidi overrides/isolates (used to disguise
# names), lone surrogates: all become spaces so the text stays one honest line.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SPACES = re.compile(r"\s+")

# What real mail labels as X is usually the Windows/WHATWG superset of X.
_CHARSET_ALIASES: dict[str, tuple[str, ...]] = {
    "us-ascii": ("cp1252",),
    "ascii": ("cp1252",),
    "iso-8859-1": ("cp1252",),
    "latin1": ("cp1252",),
    "latin-1": ("cp1252",),
    "shift_jis": ("cp932", "shift_jis_2004"),
    "shift-jis": ("cp932", "shift_jis_2004"),
    "sjis": ("cp932", "shift_jis_2004"),
    "x-sjis": ("cp932", "shift_jis_2004"),
    "ms_kanji": ("cp932",),
    "csshiftjis": ("cp932",),
    "windows-31j": ("cp932",),
    "cp932": ("cp932",),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_2"),
    "csiso2022jp": ("iso2022_jp", "iso2022_jp_2"),
    "euc-jp": ("euc_jp", "euc_jis_2004"),
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "ks_c_5601-1987": ("cp949",),
    "euc-kr": ("cp949",),
    "big5": ("cp950", "big5hkscs"),
    "iso-8859-8-i": ("iso8859_8",),
}
# Python codecs that are not mail charsets; a mail naming them gets the 8-bit guess instead.
_NOT_CHARSETS = frozenset({"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined"})
_ISO2022JP = frozenset({"iso-2022-jp", "csiso2022jp"})
_JIS_ESCAPES = (b"$@", b"$B", b"(B", b"(J", b"(I")


def decode_header_text(value: str | None, *, limit: int = HEADER_TEXT_LIMIT) -> str:
    """Header value → one line of text: RFC 2047 decoded, controls as spaces, at most `limit`.

    Handles what Japanese and other mailers really send: ISO-2022-JP (also with NEC/IBM
    characters and escape sequences cut across encoded words), Shift_JIS, UTF-8, raw 8-bit
    headers (UTF-8 or Shift_JIS, which compat32 keeps as surrogate escapes), raw 7-bit JIS,
    unknown charsets. Never raises.
    """
    if not value:
        return ""
    # Work on a bounded prefix: a 1 MB header costs no more than a short one.
    text = from_8bit(str(value)[: limit * 8])
    decoded = "".join(_decode_words(text))
    decoded = _UNPRINTABLE.sub(" ", decoded)
    decoded = _SPACES.sub(" ", decoded).strip()
    return decoded[:limit]


def from_8bit(value: str) -> str:
    """Turn surrogate-escaped raw header bytes into text: UTF-8 if valid, else CP932, else Latin-1.

    UTF-8 is tried first because random non-UTF-8 bytes are almost never valid UTF-8; CP932
    (Shift_JIS as Windows sends it) is the other raw 8-bit header seen in practice. EUC-JP is
    not guessed: its bytes also decode as CP932.
    """
    if not _SURROGATE.search(value):
        return value
    raw = _NOT_A_BYTE.sub("?", value).encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp932")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
    # CP932 maps a few stray bytes into the private use area: that means "not CP932".
    return raw.decode("latin-1") if _PRIVATE_USE.search(text) else text


def _decode_words(text: str) -> Iterator[str]:
    """Yield decoded pieces of `text`.

    Adjacent encoded words in the same charset are joined as bytes before decoding, because
    mailers split them mid-character (UTF-8) or mid-escape-sequence (ISO-2022-JP); whitespace
    between encoded words is dropped as RFC 2047 says.
    """
    position = 0
    pending_charset: str | None = None
    pending = bytearray()
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        if pending_charset is not None and not _FOLDING_SPACE.fullmatch(between):
            yield _decode_bytes(bytes(pending), pending_charset)
            pending_charset = None
            pending.clear()
        if pending_charset is None:
            yield _decode_plain(between)
        charset = match.group(1).split("*", 1)[0].lower()  # RFC 2231 "charset*language"
        data = _word_bytes(match.group(2), match.group(3))
        if data is None:  # not decodable: keep the word as it was written
            if pending_charset is not None:
                yield _decode_bytes(bytes(pending), pending_charset)
                pending_charset = None
                pending.clear()
            yield match.group(0)
        elif charset == pending_charset:
            pending += data
        else:
            if pending_charset is not None:
                yield _decode_bytes(bytes(pending), pending_charset)
                pending.clear()
            pending_charset = charset
            pending += data
        position = match.end()
    if pending_charset is not None:
        yield _decode_bytes(bytes(pending), pending_charset)
    yield _decode_plain(text[position:])


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    data = payload.encode("utf-8", "surrogatepass")
    try:
        if encoding in "qQ":
            return binascii.a2b_qp(data, header=True)  # also turns "_" into a space
        data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)  # lenient: whitespace, bad padding
        if len(data) % 4 == 1:
            data = data[:-1]
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None


def _decode_plain(text: str) -> str:
    """Unencoded header text; raw ISO-2022-JP (ESC sequences, no encoded words) is decoded."""
    if "\x1b" not in text:
        return text
    try:
        return _decode_bytes(text.encode("ascii"), "iso-2022-jp")
    except UnicodeEncodeError:  # not pure 7-bit, so not JIS either
        return text


def _decode_bytes(data: bytes, charset: str) -> str:
    for codec in _codecs_for(charset):
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    if charset in _ISO2022JP:
        return _decode_jis(data)
    return from_8bit(data.decode("ascii", "surrogateescape"))


def _codecs_for(charset: str) -> tuple[str, ...]:
    if charset in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[charset]
    try:
        name = codecs.lookup(charset).name.replace("-", "_")
    except (LookupError, ValueError):
        return ("utf-8",)  # unknown charset: then the 8-bit guess
    if name in _NOT_CHARSETS or name.endswith("_codec"):
        return ("utf-8",)
    return (name,)


def _decode_jis(data: bytes) -> str:
    """Lenient ISO-2022-JP: maps JIS X 0208 pairs to CP932, which also knows the NEC and IBM
    extensions (circled digits...) that Windows mailers put in "ISO-2022-JP" and Python's
    strict codec rejects. Broken or cut escape sequences become U+FFFD.
    """
    out: list[str] = []
    mode = "ascii"
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == 0x1B:
            escape = data[index + 1 : index + 3]
            if escape in (b"$@", b"$B"):
                mode = "kanji"
            elif escape in (b"(B", b"(J"):
                mode = "ascii"
            elif escape == b"(I":
                mode = "kana"
            elif len(escape) < 2 and any(e.startswith(escape) for e in _JIS_ESCAPES):
                out.append("\ufffd")  # cut off at the end: drop what is left of it
                break
            else:
                out.append("\ufffd")
                index += 1
                continue
            index += 3
        elif mode == "kanji" and 0x21 <= byte <= 0x7E:
            if index + 1 >= len(data) or not 0x21 <= data[index + 1] <= 0x7E:
                out.append("\ufffd")
                index += 1
                continue
            out.append(_jis_pair_to_cp932(byte, data[index + 1]).decode("cp932", "replace"))
            index += 2
        elif mode == "kana" and 0x21 <= byte <= 0x5F:
            out.append(bytes([byte + 0x80]).decode("cp932"))
            index += 1
        else:
            out.append(chr(byte) if byte < 0x80 else "\ufffd")
            index += 1
    return "".join(out)


def _jis_pair_to_cp932(first: int, second: int) -> bytes:
    lead = ((first + 1) >> 1) + 0x70
    if lead >= 0xA0:
        lead += 0x40
    if first & 1:
        trail = second + 0x1F
        if trail >= 0x7F:
            trail += 1
    else:
        trail = second + 0x7E
    return bytes([lead, trail])
