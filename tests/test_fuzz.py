"""Property-based fuzzing (hypothesis) of what handles attacker-controlled bytes.

Targets:

1. parse_message → message_facts → extract_documents on MIME trees built from strategies
   (nested multiparts with missing, wrong or duplicated boundaries; random Content-Type,
   Content-Transfer-Encoding and Content-Disposition; RFC 2231 / RFC 2047 / raw 8-bit file
   names full of hostile characters; base64 valid or damaged; PDF/PNG/JPEG/TIFF magic; NUL and
   8-bit bytes in headers; CRLF/LF mixtures), on well-formed trees whose documents are known in
   advance, and on mutations (flips, cuts, duplications) of a valid DKIM-signed fax mail.
2. The call-file writer (callfile.py, and spool.callfile_for with recipient.parse_number):
   arbitrary text in every field either is refused with ValueError or reads back as exactly the
   intended key: value lines.
3. Header text decoding (headertext.py): never raises; one bounded line, no controls.

CI runs the `faxmail-ci` profile: fixed example counts, derandomized (the same examples on
every run), no deadline. `FAXMAIL_FUZZ=long` runs the `faxmail-long` profile: random, many more
examples (about ten minutes on two cores; see the README's Tests section).
"""

from __future__ import annotations

import base64
import binascii
import email.message
import os
import quopri
import re
import string
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from faxmail.asterisk.callfile import CallFile, parse_callfile, render_callfile
from faxmail.asterisk.spool import callfile_for
from faxmail.core.documents import OFFICE_KINDS
from faxmail.core.headertext import HEADER_TEXT_LIMIT, decode_header_text, from_8bit
from faxmail.core.policy import Fax
from faxmail.core.replies import DOCUMENT_DAMAGED, NOTHING_TO_FAX, Refusal
from faxmail.outbound import partbody as decode_module
from faxmail.outbound.extract import LABEL_NAME_LIMIT, extract_documents, sniff
from faxmail.outbound.facts import message_facts
from faxmail.outbound.mimeparse import parse_message
from faxmail.outbound.recipient import parse_number
from faxmail.render.officefile import TEXT_CHARSETS, recognise
from faxmail.store.model import Job

# =============================================================================================
# Profiles
# =============================================================================================

_COMMON = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
settings.register_profile("faxmail-ci", _COMMON, max_examples=100, derandomize=True)
# About ten minutes for the whole file on two busy cores; FAXMAIL_FUZZ_EXAMPLES sets the base.
_LONG_EXAMPLES = int(os.environ.get("FAXMAIL_FUZZ_EXAMPLES", "2500"))
settings.register_profile("faxmail-long", _COMMON, max_examples=_LONG_EXAMPLES, derandomize=False)
_PROFILE = settings.get_profile(
    "faxmail-long" if os.environ.get("FAXMAIL_FUZZ") == "long" else "faxmail-ci"
)


def fuzz(weight: float = 1.0) -> settings:
    """The profile, with `weight` times its example count (cheap targets get more)."""
    return settings(_PROFILE, max_examples=max(1, int(_PROFILE.max_examples * weight)))


# =============================================================================================
# Building blocks
# =============================================================================================

# Characters that break headers, paths, shells, call files or one-line displays.
HOSTILE = [
    *"\x00\r\n\t\x0b\x0c\x1b\x7f\x85\xa0\u2028\u2029\u202e\u2066\u200b\ufeff\ufffd",
    *";$`'\"\\/|&<>(){}[]*?!#~=%+,:@ ._-",
    *"é日本語①ｱ",
    *("\ud800", "\udc80", "\udcff", "\U0001f600", "../", "$(id)", "=?", "?="),
]

hostile_text = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.characters(codec=None)), max_size=30
).map("".join)

# Lone surrogates next to escaped bytes (U+DC80..DCFF: what compat32 makes of 8-bit bytes), as
# text decoded from RFC 2231 names in utf-7 or unicode_escape has them.
surrogate_soup = st.lists(
    st.sampled_from(["\ud800", "\udbff", "\udc7f", "\udc80", "\udcff", "\udd00", "a", "é", ".pdf"]),
    max_size=6,
).map("".join)

EXTENSIONS = ["pdf", "PDF", "png", "PNG", "jpg", "jpeg", "jpe", "tif", "tiff", "bin", "doc", ""]

file_names = st.one_of(
    hostile_text,
    surrogate_soup,
    st.builds(
        lambda prefix, stem, ext: f"{prefix}{stem}.{ext}" if ext else f"{prefix}{stem}",
        st.sampled_from(["", "../../", "..\\..\\", "C:\\Users\\x\\", "/etc/", "~/", "a/b/"]),
        hostile_text,
        st.sampled_from(EXTENSIONS),
    ),
)

CHARSETS = [
    "utf-8",
    "UTF-8",
    "us-ascii",
    "iso-8859-1",
    "windows-1252",
    "iso-2022-jp",
    "ISO-2022-JP",
    "shift_jis",
    "cp932",
    "euc-jp",
    "utf-7",
    "utf-16",
    "utf-16-le",
    "utf-32",
    "unicode_escape",
    "raw_unicode_escape",
    "idna",
    "punycode",
    "zlib",
    "base64",
    "hex",
    "rot13",
    "undefined",
    "x-bogus",
    "utf-8*ja",
    "",
]

DECODE_TO_ANYTHING = ["utf-7", "unicode_escape", "raw_unicode_escape"]


def encode_in(text: str, charset: str) -> bytes:
    """`text` as bytes in `charset` when Python knows it, else UTF-8; lone surrogates kept."""
    try:
        return text.encode(charset, "surrogatepass")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return text.encode("utf-8", "surrogatepass")


def percent(data: bytes) -> bytes:
    return b"".join(b"%%%02X" % byte for byte in data)


@st.composite
def encoded_word(draw: st.DrawFn, text: str | None = None) -> bytes:
    """One RFC 2047 encoded word (maybe damaged) carrying `text` or random bytes."""
    charset = draw(st.sampled_from(CHARSETS))
    if text is None:
        data = draw(
            st.one_of(st.binary(max_size=30), hostile_text.map(lambda t: encode_in(t, charset)))
        )
    else:
        data = encode_in(text, charset)
    if draw(st.booleans()):
        payload = base64.b64encode(data)
        kind = b"B"
        if draw(st.integers(0, 3)) == 0:  # damaged: cut, bad characters
            payload = payload[: draw(st.integers(0, len(payload)))] + draw(
                st.sampled_from([b"", b"!", b"=", b"====", b"\xff", b"?"])
            )
    else:
        payload = quopri.encodestring(data, header=True).replace(b"\n", b"")
        kind = b"Q"
    word = b"=?" + charset.encode("ascii") + b"?" + kind + b"?" + payload + b"?="
    return word


@st.composite
def cut_iso2022jp_words(draw: st.DrawFn) -> bytes:
    """Japanese text in ISO-2022-JP, cut at any byte into two (or more) encoded words."""
    text = draw(st.sampled_from(["件名テスト", "請求書①", "ｱｲｳ半角", "日本語の件名です", "表"]))
    jis = text.encode("iso2022_jp_ext", "replace")
    cuts = sorted(draw(st.lists(st.integers(0, len(jis)), max_size=3)))
    pieces, start = [], 0
    for cut in [*cuts, len(jis)]:
        pieces.append(jis[start:cut])
        start = cut
    words = [b"=?ISO-2022-JP?B?" + base64.b64encode(p) + b"?=" for p in pieces if p]
    separator = draw(st.sampled_from([b" ", b"\r\n ", b"\n\t", b"", b" x "]))
    return separator.join(words)


header_values = st.lists(
    st.one_of(
        hostile_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=20),
        encoded_word(),
        cut_iso2022jp_words(),
        hostile_text.map(lambda t: encode_in(t, "cp932")),
        st.sampled_from(
            [b"\x1b$B", b"\x1b(B", b"\x1b$B$3$s\x1b(", b"\r\n ", b"\r\n\t", b"\n", b"\x00", b";"]
        ),
    ),
    max_size=6,
).map(b" ".join)


# --------------------------------------------------------------------------- document bytes

MAGIC: dict[str, bytes] = {
    "pdf": b"%PDF-1.4\n",
    "pdf-late": b"\r\n\xef\xbb\xbfjunk%PDF-1.7\n",
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg": b"\xff\xd8\xff\xe0",
    "tiff": b"II*\x00",
    "tiff-mm": b"MM\x00*",
    "gif": b"GIF89a",
    "zip": b"PK\x03\x04",
    "html": b"<html>",
    "none": b"",
}

document_bytes = st.builds(
    lambda magic, tail: MAGIC[magic] + tail,
    st.sampled_from(sorted(MAGIC)),
    st.binary(max_size=120),
)


# =============================================================================================
# MIME trees (hostile)
# =============================================================================================

# Written out again on purpose, not imported: the oracle for what extract.py must take.
DECLARED = {
    "application/pdf": "pdf",
    "application/x-pdf": "pdf",
    "application/acrobat": "pdf",
    "application/vnd.pdf": "pdf",
    "image/tiff": "tiff",
    "image/x-tiff": "tiff",
    "image/png": "png",
    "image/x-png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
}
GENERIC = ["application/octet-stream", "binary/octet-stream", "application/download"]
CONTENT_TYPES = st.one_of(
    st.sampled_from(sorted(DECLARED) + GENERIC),
    st.sampled_from(
        [
            "text/plain",
            "text/html",
            "application/msword",
            "image/gif",
            "message/rfc822",
            "message/partial",
            "APPLICATION/PDF",
            "Image/PNG",
            "application/pdf\x00",
            "application/ pdf",
            "///",
            "",
        ]
    ),
    hostile_text,
)
TRANSFER_ENCODINGS = [
    None,
    "base64",
    "BASE64 ",
    "quoted-printable",
    "7bit",
    "8bit",
    "binary",
    "x-uuencode",
    "base-64",
    "\x00",
]


@st.composite
def name_params(draw: st.DrawFn, key: str) -> bytes:
    """`; filename=...` (or name=) in one of the ways mailers and attackers write it."""
    name = draw(file_names)
    form = draw(
        st.sampled_from(["quoted", "token", "rfc2231", "rfc2231-parts", "rfc2047", "raw-8bit"])
    )
    k = key.encode("ascii")
    if form == "quoted":
        return b"; " + k + b'="' + name.replace('"', '\\"').encode("utf-8", "surrogatepass") + b'"'
    if form == "token":
        return b"; " + k + b"=" + name.encode("utf-8", "surrogatepass")
    if form == "raw-8bit":
        charset = draw(st.sampled_from(["utf-8", "cp932", "latin-1", "euc-jp"]))
        return b"; " + k + b'="' + encode_in(name, charset) + b'"'
    # Codecs whose decoding yields lone surrogates or controls get extra weight.
    charset = draw(st.sampled_from(CHARSETS) | st.sampled_from(DECODE_TO_ANYTHING))
    data = encode_in(name, charset)
    if form == "rfc2047":
        word = draw(encoded_word(name))
        return b"; " + k + b'="' + word + b'"'
    if form == "rfc2231":
        lang = draw(st.sampled_from([b"", b"ja", b"en-us", b"'"]))
        return b"; " + k + b"*=" + charset.encode() + b"'" + lang + b"'" + percent(data)
    # Continuations, perhaps with indices missing, duplicated or out of order.
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)] or [b""]
    indices = list(range(len(chunks)))
    mangle = draw(st.sampled_from(["none", "skip", "duplicate", "reverse"]))
    if mangle == "skip" and len(indices) > 1:
        indices[1] += 1
    elif mangle == "duplicate":
        indices[-1] = 0
    elif mangle == "reverse":
        indices.reverse()
    out = b""
    for index, (position, chunk) in enumerate(zip(indices, chunks, strict=True)):
        head = charset.encode() + b"''" if index == 0 else b""
        out += b"; " + k + b"*%d*=" % position + head + percent(chunk)
    return out


@st.composite
def transfer_encoded(draw: st.DrawFn, data: bytes) -> tuple[str | None, bytes]:
    encoding = draw(st.sampled_from(TRANSFER_ENCODINGS))
    if encoding is not None and encoding.strip().lower() == "base64":
        body = base64.encodebytes(data)
        damage = draw(st.sampled_from(["none"] * 3 + ["cut", "char", "padding", "8bit", "split"]))
        if damage == "cut" and body:
            body = body[: draw(st.integers(0, len(body) - 1))]
        elif damage == "char":
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.sampled_from([b"!", b"*", b"-", b"_", b"="])) + body[at:]
        elif damage == "padding":
            body = body.rstrip(b"=\n") + b"\n"
        elif damage == "8bit":
            body = body[:4] + b"\xe9\x00" + body[4:]
        elif damage == "split":
            body = body.replace(b"\n", b"\n\n")
        return encoding, body
    if encoding == "quoted-printable":
        return encoding, quopri.encodestring(data)
    return encoding, data


@dataclass(frozen=True)
class Part:
    headers: bytes  # its header lines, each ending in \r\n
    body: bytes


@st.composite
def hostile_leaf(draw: st.DrawFn) -> Part:
    ctype = draw(CONTENT_TYPES)
    headers = b""
    if ctype or draw(st.booleans()):
        headers += b"Content-Type: " + ctype.encode("utf-8", "surrogatepass")
        if draw(st.booleans()):
            headers += draw(name_params("name"))
        headers += b"\r\n"
    disposition = draw(
        st.sampled_from([None, "attachment", "inline", "ATTACHMENT", "form-data", "\x00"])
    )
    if disposition is not None:
        headers += b"Content-Disposition: " + disposition.encode()
        if draw(st.integers(0, 4)):
            headers += draw(name_params("filename"))
        headers += b"\r\n"
    if draw(st.integers(0, 5)) == 0:
        headers += b"Content-ID: <" + draw(st.sampled_from([b"root", b"img", b"\xff"])) + b">\r\n"
    encoding, body = draw(transfer_encoded(draw(document_bytes)))
    if encoding is not None:
        headers += b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n"
    if draw(st.integers(0, 6)) == 0:  # 8-bit and NUL bytes in a header of the part
        headers += b"X-Junk: " + draw(st.binary(max_size=20)).replace(b"\n", b"") + b"\r\n"
    return Part(headers, body)


BOUNDARY_CHARS = string.ascii_letters + string.digits + "'()+_,-./:=? "


@st.composite
def hostile_multipart(draw: st.DrawFn, children: list[Part]) -> Part:
    subtype = draw(
        st.sampled_from(["mixed", "alternative", "related", "signed", "digest", "x-foo", "MIXED"])
    )
    boundary = draw(
        st.one_of(
            st.text(BOUNDARY_CHARS, min_size=1, max_size=20),
            st.sampled_from(["b", "--", "==", " ", "x y", "=_a_="]),
            hostile_text.filter(bool),
        )
    ).encode("utf-8", "surrogatepass")
    style = draw(
        st.sampled_from(
            ["ok", "ok", "ok", "missing", "wrong", "duplicate", "no-close", "unquoted", "empty"]
        )
    )
    used = boundary
    params = b'; boundary="' + boundary + b'"'
    if style == "missing":
        params = b""
    elif style == "wrong":
        used = boundary + b"x"
    elif style == "duplicate":
        other = draw(st.text(BOUNDARY_CHARS, min_size=1, max_size=8)).encode()
        params += b'; boundary="' + other + b'"'
        used = draw(st.sampled_from([boundary, other]))
    elif style == "unquoted":
        params = b"; boundary=" + boundary
    elif style == "empty":
        params = b'; boundary=""'
    if subtype == "related" and draw(st.booleans()):
        params += b'; start="<root>"'
    headers = b"Content-Type: multipart/" + subtype.encode() + params + b"\r\n"
    body = draw(st.sampled_from([b"", b"This is a MIME message.\r\n", b"--\r\n"]))
    for child in children:
        body += b"--" + used + b"\r\n" + child.headers + b"\r\n" + child.body + b"\r\n"
    if style != "no-close":
        body += b"--" + used + b"--\r\n"
    body += draw(st.sampled_from([b"", b"epilogue\r\n", b"--" + used + b"\r\n"]))
    return Part(headers, body)


mime_trees = st.recursive(
    hostile_leaf(),
    lambda children: st.lists(children, max_size=4).flatmap(hostile_multipart),
    max_leaves=10,
)

from_values = st.one_of(
    st.sampled_from(
        [
            b"Alice <alice@example.jp>",
            b"alice@example.jp",
            b"alice@example.org)<bob@example.org>",
            b"(alice@example.org <bob@example.org>",
            b'"Doe, John" <john@example.com>',
            b"a@example.com, b@example.com",
            b"<a@example.com\r\n\tfoo>",
            b"=?UTF-8?B?Qm9zcyA8Ym9zc0BleGFtcGxlLmNvbT4=?= <real@evil.example>",
            b"\xe5\xb1\xb1\xe7\x94\xb0 <t@example.jp>",
            b"\x00@example.com",
        ]
    ),
    st.builds(lambda name, addr: name + b" <" + addr + b">", header_values, header_values),
    header_values,
)


@st.composite
def top_headers(draw: st.DrawFn) -> bytes:
    fields: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(0, 2))):
        fields.append((b"From", draw(from_values)))
    fields.append((b"To", b"fax+0312345678@fax.example.jp"))
    for name in (b"Subject", b"Reply-To", b"Message-ID"):
        if draw(st.integers(0, 3)):
            fields.append((name, draw(header_values)))
    if draw(st.booleans()):
        fields.append((b"MIME-Version", b"1.0"))
    for _ in range(draw(st.integers(0, 2))):  # junk field names: 8-bit, NUL, no colon
        fields.append((draw(st.sampled_from([b"X-\xff", b"X-\x00", b"Subject", b" folded"])), b"v"))
    return b"".join(name + b": " + value + b"\r\n" for name, value in fields)


@st.composite
def line_endings(draw: st.DrawFn, raw: bytes) -> bytes:
    mode = draw(st.sampled_from(["crlf", "crlf", "lf", "mixed", "cr"]))
    if mode == "lf":
        return raw.replace(b"\r\n", b"\n")
    if mode == "cr":
        return raw.replace(b"\r\n", b"\r")
    if mode == "mixed":
        lines = raw.split(b"\r\n")
        choices = draw(st.lists(st.booleans(), min_size=1, max_size=16))
        out = bytearray()
        for index, line in enumerate(lines):
            out += line
            if index < len(lines) - 1:
                out += b"\n" if choices[index % len(choices)] else b"\r\n"
        return bytes(out)
    return raw


@st.composite
def hostile_mails(draw: st.DrawFn) -> bytes:
    root = draw(mime_trees)
    raw = draw(top_headers()) + root.headers + b"\r\n" + root.body
    return draw(line_endings(raw))


# =============================================================================================
# MIME trees (well-formed): the documents are known in advance
# =============================================================================================

_SAFE_STEM = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8)


@dataclass(frozen=True)
class Expected:
    kind: str | None  # None: an ignored part
    data: bytes  # its decoded bytes
    name: str | None
    damaged: bool  # a declared document that is not one: the mail is refused


@st.composite
def wellformed_leaf(draw: st.DrawFn) -> tuple[Part, Expected]:
    ctype = draw(st.sampled_from([*sorted(DECLARED), *GENERIC, "text/plain", "image/gif"]))
    data = draw(document_bytes.filter(bool))
    name: str | None = None
    headers = b"Content-Type: " + ctype.encode() + b"\r\n"
    if draw(st.booleans()):
        name = draw(_SAFE_STEM) + "." + draw(st.sampled_from(EXTENSIONS[:-1]))
        form = draw(st.sampled_from(["quoted", "rfc2231", "rfc2047"]))
        if form == "quoted":
            param = b'filename="' + name.encode() + b'"'
        elif form == "rfc2231":
            param = b"filename*=utf-8''" + percent(name.encode())
        else:
            param = b'filename="=?UTF-8?B?' + base64.b64encode(name.encode()) + b'?="'
        headers += b"Content-Disposition: attachment; " + param + b"\r\n"
    if draw(st.booleans()):
        headers += b"Content-Transfer-Encoding: base64\r\n"
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    else:
        headers += b"Content-Transfer-Encoding: quoted-printable\r\n"
        body = qp_every_byte(data)
    kind = sniff(data)
    if ctype in DECLARED:
        return Part(headers, body), Expected(kind, data, name, damaged=kind is None)
    office = ctype == "text/plain" and name is not None  # a text attachment: a document
    office = office or (ctype in GENERIC and bool(name) and str(name).lower().endswith(".doc"))
    if office and kind is None:
        return Part(headers, body), _office_expectation(data, name, text=ctype == "text/plain")
    if office:  # a picture or PDF declared as text is faxed as what it is; one named .doc not
        return Part(headers, body), Expected(kind if ctype == "text/plain" else None, data, name,
                                             damaged=False)  # fmt: skip
    wanted = {"pdf": "pdf", "tif": "tiff", "tiff": "tiff", "png": "png", "jpg": "jpeg"}
    wanted |= {"jpeg": "jpeg", "jpe": "jpeg"}
    promised = wanted.get(name.rpartition(".")[2].lower()) if name else None
    taken = ctype in GENERIC and promised is not None and kind == promised
    return Part(headers, body), Expected(kind if taken else None, data, name, damaged=False)


def _office_expectation(data: bytes, name: str | None, *, text: bool) -> Expected:
    """What render/officefile.py makes of bytes that are no PDF or image: a ZIP that is not an
    Office file is damaged; declared text is text in the first charset that decodes it all
    (stored as UTF-8) or damaged; anything else is not an Office file (ignored)."""
    if data.startswith(b"PK\x03\x04"):
        return Expected(None, data, name, damaged=True)
    if not text:
        return Expected(None, data, name, damaged=False)
    for charset in TEXT_CHARSETS:
        try:
            decoded = data.decode(charset)
        except UnicodeDecodeError:
            continue
        if not re.search("[\x00-\x08\x0b\x0e-\x1f\x7f]", decoded):
            return Expected("txt", decoded.encode("utf-8"), name, damaged=False)
    return Expected(None, data, name, damaged=True)


def qp_every_byte(data: bytes) -> bytes:
    """Quoted-printable with every byte encoded (line breaks too): exact whatever the line ends."""
    encoded = b"".join(b"=%02X" % byte for byte in data)
    return b"=\r\n".join(encoded[i : i + 72] for i in range(0, len(encoded), 72))


@st.composite
def wellformed_tree(draw: st.DrawFn, path: str = "0") -> tuple[Part, list[Expected]]:
    if path.count(".") >= 3 or draw(st.integers(0, 2)) == 0:
        leaf, leaf_expected = draw(wellformed_leaf())
        return leaf, [leaf_expected]
    # "=_" never occurs in base64 or quoted-printable text, and the path is unique in the tree:
    # the boundary is unambiguous.
    boundary = f"=_fuzz{path}_=".encode()
    subtype = draw(st.sampled_from([b"mixed", b"alternative"]))
    count = draw(st.integers(1, 4))
    children = [draw(wellformed_tree(f"{path}.{index}")) for index in range(count)]
    body = b"preamble\r\n"
    expected: list[Expected] = []
    for child, child_expected in children:
        body += b"--" + boundary + b"\r\n" + child.headers + b"\r\n" + child.body + b"\r\n"
        expected += child_expected
    body += b"--" + boundary + b"--\r\n"
    headers = b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"\r\n'
    return Part(headers, body), expected


# =============================================================================================
# Invariants of the extraction pipeline
# =============================================================================================

_PART_NAME = re.compile(
    r"part-(\d{2,3})\.(pdf|tiff|png|jpeg|docx|doc|xlsx|xls|odt|ods|odp|rtf|pptx|txt)"
)
_MAGIC_OF = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "tiff": (b"II*\x00", b"MM\x00*"),
}
_ENHANCED = re.compile(r"5\.\d{1,3}\.\d{1,3}")
# Path separators, shell metacharacters, quotes: none may be in a label. ('(' and ')' are the
# label's own punctuation, "attachment 1 (a.pdf)"; '&' is allowed by extract.py: see below.)
_LABEL_FORBIDDEN = set("/\\;$`|<>\"'*?!#~{}%=\x00\r\n\t")
_LABEL = re.compile(r"attachment (\d+)(?: \((.+)\))?", re.DOTALL)
_UNPRINTABLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def assert_one_inert_line(text: str, limit: int) -> None:
    assert len(text) <= limit, (len(text), limit)
    for char in text:
        assert char == " " or not char.isspace(), repr(text)
        assert unicodedata.category(char) not in ("Cc", "Zl", "Zp", "Cs"), repr(text)
        assert char not in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069", repr(text)
    assert "  " not in text, repr(text)


def check_label(label: str, number: int) -> None:
    found = _LABEL.fullmatch(label)
    assert found is not None, repr(label)
    assert int(found.group(1)) == number
    assert len(label) <= len(f"attachment {number} ()") + LABEL_NAME_LIMIT
    assert not (_LABEL_FORBIDDEN & set(label)), repr(label)
    assert not any(unicodedata.category(c) in _UNPRINTABLE_CATEGORIES for c in label), repr(label)


def check_facts(message: email.message.Message) -> None:
    facts = message_facts(message)
    assert_one_inert_line(facts.subject, HEADER_TEXT_LIMIT)
    assert_one_inert_line(facts.from_name, 200)
    for address in (facts.from_address, facts.reply_to or ""):
        assert not set(address) & set("\r\n\x00 \t<>,;"), repr(address)
        assert len(address) <= 254
        assert not address or address.count("@") == 1
    if facts.message_id is not None:
        assert re.fullmatch(r"<[\x21-\x7e]{1,250}>", facts.message_id), facts.message_id
    assert facts.from_count >= 0
    if facts.from_count == 0:
        assert facts.from_address == ""


def run_pipeline(raw: bytes) -> tuple[list[tuple[str, bytes, str]] | None, Refusal | None]:
    """Invariant 1 for one mail; returns (documents as (kind, bytes, label)) or the refusal."""
    try:
        message = parse_message(raw)
    except Refusal as refusal:
        check_refusal(refusal)
        return None, refusal
    check_facts(message)
    with tempfile.TemporaryDirectory(prefix="fxm-fuzz-") as name:
        workdir = Path(name)
        try:
            documents = extract_documents(message, workdir)
        except Refusal as refusal:
            check_refusal(refusal)
            assert list(workdir.iterdir()) == [], "files left behind after a refusal"
            return None, refusal
        assert documents, "extract_documents returned no documents without refusing"
        assert sorted(p.name for p in workdir.iterdir()) == sorted(d.path.name for d in documents)
        result: list[tuple[str, bytes, str]] = []
        for number, document in enumerate(documents, 1):
            path = document.path
            assert path.parent == workdir and not path.is_symlink()
            assert path.resolve().parent == workdir.resolve()
            found = _PART_NAME.fullmatch(path.name)
            assert found is not None, path.name
            assert (int(found.group(1)), found.group(2)) == (number, document.kind)
            data = path.read_bytes()
            assert data, "an empty document was written"
            if document.kind in OFFICE_KINDS:
                # Office files and text attachments: what render/officefile.py says they are
                # (a text attachment was rewritten as UTF-8, and still reads as text)
                again = recognise(path, "check", text=document.kind == "txt")
                assert again == document.kind
                assert sniff(data) is None
            elif document.kind == "pdf":
                assert b"%PDF-" in data[:1024]
            else:
                assert data.startswith(_MAGIC_OF[document.kind])
            if document.kind not in OFFICE_KINDS:
                assert sniff(data) == document.kind
            assert path.stat().st_mode & 0o777 == 0o600
            check_label(document.label, number)
            result.append((document.kind, data, document.label))
        return result, None


def check_refusal(refusal: Refusal) -> None:
    reply = refusal.reply
    assert reply.code.startswith("5") and len(reply.code) == 3, str(reply)
    assert _ENHANCED.fullmatch(reply.enhanced), str(reply)
    assert reply.enhanced[0] == reply.code[0]
    assert re.fullmatch(r"[\x20-\x7e]+", reply.text), repr(reply.text)


# =============================================================================================
# 1. Extraction
# =============================================================================================


@fuzz(2)
@given(hostile_mails())
def test_hostile_mime_trees_only_ever_refuse(raw: bytes) -> None:
    run_pipeline(raw)


@fuzz(1.5)
@given(wellformed_tree(), st.sampled_from(["crlf", "lf"]))
def test_wellformed_trees_give_exactly_their_documents(
    tree: tuple[Part, list[Expected]], endings: str
) -> None:
    root, expected = tree
    raw = b"From: Alice <alice@example.jp>\r\nSubject: fax\r\nMIME-Version: 1.0\r\n"
    raw += root.headers + b"\r\n" + root.body
    if endings == "lf":
        raw = raw.replace(b"\r\n", b"\n")
    documents, refusal = run_pipeline(raw)
    wanted: list[Expected] = []
    for item in expected:
        if item.damaged:
            assert refusal is not None and refusal.reply.enhanced == DOCUMENT_DAMAGED.enhanced
            assert "cannot be read" in refusal.reply.text
            return
        if item.kind is not None:
            wanted.append(item)
    if not wanted:
        assert refusal is not None and refusal.reply == NOTHING_TO_FAX, refusal
        return
    assert documents is not None, refusal
    assert [kind for kind, _, _ in documents] == [item.kind for item in wanted]
    for number, ((_, data, label), item) in enumerate(zip(documents, wanted, strict=True), 1):
        assert data == item.data
        if item.name is not None:
            assert label == f"attachment {number} ({item.name})"
        else:
            assert label == f"attachment {number}"


_WHITESPACE = b" \t\r\n\v\f"


@st.composite
def base64_bodies(draw: st.DrawFn) -> bytes:
    """Base64 of a document, wrapped at any width, perhaps damaged anywhere."""
    text = base64.b64encode(draw(document_bytes))
    width = draw(st.integers(1, 100))
    ending = draw(st.sampled_from([b"\r\n", b"\n", b" \r\n", b"\t\n"]))
    body = ending.join(text[i : i + width] for i in range(0, len(text), width)) + ending
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(body)))
        damage = draw(
            st.sampled_from(["insert", "delete", "unpad", "pad", "after-pad", "far-after", "8bit"])
        )
        if damage == "insert":
            body = (
                body[:at]
                + draw(st.sampled_from([b"=", b"!", b"A", b"\x00", b"-", b"_"]))
                + body[at:]
            )
        elif damage == "delete":
            body = body[:at] + body[at + draw(st.integers(1, 5)) :]
        elif damage == "unpad":
            body = body.replace(b"=", b"")
        elif damage == "pad":
            body = body.rstrip(_WHITESPACE) + b"=" * draw(st.integers(1, 3)) + ending
        elif damage == "after-pad":
            body = body.rstrip(_WHITESPACE) + b"==" + ending + b"QUFB" + ending
        elif damage == "far-after":
            body = (
                body + b" " * draw(st.integers(50, 80)) + draw(st.sampled_from([b"A", b" ", b"="]))
            )
        else:
            body = body[:at] + b"\xc3\xa9" + body[at:]
    return body


@fuzz(3)
@given(base64_bodies(), st.sampled_from([0, 1, 3, 4, 5, 7, 64]))
def test_base64_documents_decode_exactly_as_strict_base64_or_are_refused(
    body: bytes, piece: int
) -> None:
    """Whatever the size of the pieces partbody.py decodes in (BASE64_PIECE, when it has one),
    a base64 part gives exactly what strict base64 gives for the whole text, or is refused."""
    try:
        reference: bytes | None = binascii.a2b_base64(
            body.translate(None, _WHITESPACE), strict_mode=True
        )
    except binascii.Error:
        reference = None
    raw = (
        b"From: a@example.com\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body
    )
    if piece and hasattr(decode_module, "BASE64_PIECE"):
        with mock.patch.object(decode_module, "BASE64_PIECE", piece):
            documents, refusal = run_pipeline(raw)
    else:
        documents, refusal = run_pipeline(raw)
    # partbody.py refuses more than MAX_PADDING_TEXT characters after the first "=" without
    # collecting them (strict mode may take a long run of "="; nobody's mailer writes one).
    compact = body.translate(None, _WHITESPACE)
    if b"=" in compact and len(compact) - compact.index(b"=") > decode_module.MAX_PADDING_TEXT:
        assert refusal is not None and refusal.reply.text.endswith("bad base64"), refusal
        return
    if reference is None:
        assert refusal is not None and refusal.reply.text.endswith("bad base64"), refusal
    elif not reference:
        assert refusal is not None and refusal.reply.text.endswith("it is empty"), refusal
    elif sniff(reference) is None:
        assert refusal is not None and "not a PDF" in refusal.reply.text, refusal
    else:
        assert documents == [(sniff(reference), reference, "attachment 1")], refusal


# A valid fax mail as an office sends it: DKIM-signed, Japanese subject, text + PDF + PNG.
_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x08\x08\x02"
SIGNED_MAIL = (
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.jp; s=sel;\r\n"
    b" h=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
    b" b=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==\r\n"
    b"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <alice@example.jp>\r\n"
    b"To: fax+03-1234-5678@fax.example.jp\r\n"
    b"Reply-To: Office <office@example.jp>\r\n"
    b"Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n"
    b"Message-ID: <20260101.abc@example.jp>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="=_b1_="\r\n\r\n'
    b"--=_b1_=\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
    b"\x1b$B$h$m$7$/\x1b(B\r\n"
    b'--=_b1_=\r\nContent-Type: application/pdf; name="a.pdf"\r\n'
    b"Content-Disposition: attachment; filename*=utf-8''%E8%AB%8B%E6%B1%82.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(_PDF).replace(b"\n", b"\r\n")
    + b"--=_b1_=\r\nContent-Type: image/png\r\n"
    b'Content-Disposition: attachment; filename="=?UTF-8?B?5Zuz6Z2i?=.png"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(_PNG).replace(b"\n", b"\r\n")
    + b"--=_b1_=--\r\n"
)
TOKENS = [b"\r\n", b"\n", b"--", b"--=_b1_=\r\n", b"\x00", b"=?", b"?=", b";", b"\x1b$B", b'"']


@st.composite
def mutated_mails(draw: st.DrawFn) -> bytes:
    data = bytearray(SIGNED_MAIL)
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "delete", "insert", "duplicate", "truncate"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(
                st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=8))
            )
        elif op == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
        else:
            del data[at:]
    return bytes(data)


def test_the_mutation_seed_is_a_good_fax_mail() -> None:
    documents, refusal = run_pipeline(SIGNED_MAIL)
    assert refusal is None and documents is not None
    assert [(kind, label) for kind, _, label in documents] == [
        ("pdf", "attachment 1 (請求.pdf)"),
        ("png", "attachment 2 (図面.png)"),
    ]
    facts = message_facts(parse_message(SIGNED_MAIL))
    assert (facts.subject, facts.from_name, facts.from_address) == (
        "こんにちは",
        "山田",
        "alice@example.jp",
    )


@fuzz(3)
@given(mutated_mails())
def test_mutated_signed_fax_mail_only_ever_refuses(raw: bytes) -> None:
    run_pipeline(raw)


@fuzz(1)
@given(st.binary(max_size=2000))
def test_random_bytes_only_ever_refuse(raw: bytes) -> None:
    run_pipeline(raw)


@fuzz(2)
@given(
    st.lists(
        st.tuples(st.sampled_from(["From", "Reply-To", "Subject", "Message-ID"]), header_values),
        max_size=6,
    )
)
def test_header_facts_are_one_inert_line(fields: list[tuple[str, bytes]]) -> None:
    raw = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in fields)
    message = parse_message(raw + b"\r\nbody\r\n")
    check_facts(message)
    facts = message_facts(message)
    if facts.from_address:
        # Never an address the author did not write: it appears as is in a From field.
        written = [from_8bit(str(v)) for k, v in message.raw_items() if k.lower() == "from"]
        assert facts.from_address in written[0]
    if facts.reply_to:
        written = [from_8bit(str(v)) for k, v in message.raw_items() if k.lower() == "reply-to"]
        assert facts.reply_to in written[0]


# =============================================================================================
# 2. Call files
# =============================================================================================

ALNUM = string.ascii_letters + string.digits
ALLOWED = {
    "channel": set(ALNUM + "/@+._:-"),
    "dialplan": set(ALNUM + "_+-"),
    "variable": set(ALNUM + "/._:+@=-"),
    "caller_name": set(ALNUM + " ._-"),
}


def near(allowed: str, max_size: int) -> st.SearchStrategy[str]:
    """Mostly allowed characters, sometimes a hostile one: both sides of every allow-list."""
    return st.one_of(
        st.text(allowed, max_size=max_size),
        st.lists(
            st.one_of(st.sampled_from(allowed), st.sampled_from(HOSTILE)), max_size=max_size
        ).map("".join),
        hostile_text,
    )


def channel_ok(value: str) -> bool:
    return 1 <= len(value) <= 200 and set(value) <= ALLOWED["channel"]


def dialplan_ok(value: str) -> bool:
    return 1 <= len(value) <= 79 and set(value) <= ALLOWED["dialplan"]


def variable_name_ok(value: str) -> bool:
    return (
        1 <= len(value) <= 64
        and value[0] in string.ascii_uppercase
        and set(value) <= set(string.ascii_uppercase + string.digits + "_")
    )


def variable_value_ok(value: str) -> bool:
    return (
        len(value) <= 900
        and set(value) <= ALLOWED["variable"] | {" "}
        and value == value.strip(" ")
        and "  " not in value
    )


def caller_id_ok(value: str | None) -> bool:
    if value is None:
        return True
    found = re.fullmatch(r'"(.*)" <(.*)>', value, re.DOTALL)
    if found is None:
        return False
    name, digits = found.groups()
    return (
        len(name) <= 40
        and set(name) <= ALLOWED["caller_name"]
        and 1 <= len(digits) <= 20
        and set(digits) <= set(string.digits)
    )


caller_ids = st.one_of(
    st.none(),
    st.builds(
        lambda name, digits: f'"{name}" <{digits}>',
        near(ALNUM + " ._-", 42),
        near(string.digits, 22),
    ),
    hostile_text,
)
variables = st.dictionaries(
    near(string.ascii_uppercase + string.digits + "_", 66),
    st.one_of(
        near(ALNUM + "/._:+@=- ", 40),
        st.sampled_from(["a" * 900, "a" * 901, "ACME Corp", "x;y", "x #y", "a\nChannel: x"]),
    ),
    max_size=4,
)


def expected_pairs(cf: CallFile) -> list[tuple[str, str]]:
    pairs = [("Channel", cf.channel)]
    if cf.caller_id is not None:
        pairs.append(("CallerID", cf.caller_id))
    pairs += [
        ("MaxRetries", str(cf.max_retries)),
        ("RetryTime", str(cf.retry_time)),
        ("WaitTime", str(cf.wait_time)),
        ("Context", cf.context),
        ("Extension", cf.extension),
        ("Priority", str(cf.priority)),
        ("Archive", "yes" if cf.archive else "no"),
    ]
    pairs += [("Setvar", f"{key}={cf.variables[key]}") for key in sorted(cf.variables)]
    return pairs


def check_rendered(cf: CallFile) -> bytes:
    data = render_callfile(cf)
    assert data.endswith(b"\n")
    assert not set(data) & {0, ord("\r")}
    assert all(0x20 <= byte < 0x7F or byte == 0x0A for byte in data)
    lines = data[:-1].split(b"\n")
    assert all(len(line) + 1 < 1024 for line in lines)
    assert parse_callfile(data) == expected_pairs(cf)
    assert len(lines) == len(expected_pairs(cf))
    assert all(b";" not in line and b"#" not in line for line in lines)
    return data


@fuzz(4)
@given(
    channel=near(ALNUM + "/@+._:-", 40),
    context=near(ALNUM + "_+-", 20),
    extension=near(ALNUM + "_+-", 20),
    caller_id=caller_ids,
    variables=variables,
    numbers=st.tuples(*(st.integers(-5, 100_000) for _ in range(4))),
    archive=st.booleans(),
)
@example(
    channel="PJSIP/1@t",
    context="c",
    extension="s",
    caller_id='"" <1>',
    variables={"V": "a\nChannel: Local/x@evil"},
    numbers=(1, 2, 300, 45),
    archive=True,
)
def test_call_file_holds_exactly_the_intended_lines(
    channel: str,
    context: str,
    extension: str,
    caller_id: str | None,
    variables: dict[str, str],
    numbers: tuple[int, int, int, int],
    archive: bool,
) -> None:
    priority, max_retries, retry_time, wait_time = numbers
    valid = (
        channel_ok(channel)
        and dialplan_ok(context)
        and dialplan_ok(extension)
        and caller_id_ok(caller_id)
        and 1 <= priority <= 1000
        and 0 <= max_retries <= 100
        and 10 <= retry_time <= 86400
        and 5 <= wait_time <= 600
        and all(variable_name_ok(k) and variable_value_ok(v) for k, v in variables.items())
    )
    try:
        cf = CallFile(
            channel=channel,
            context=context,
            extension=extension,
            priority=priority,
            max_retries=max_retries,
            retry_time=retry_time,
            wait_time=wait_time,
            caller_id=caller_id,
            archive=archive,
            variables=variables,
        )
    except ValueError as error:
        assert not valid, f"refused a valid call file: {error}"
        assert "\n" not in str(error) and len(str(error)) < 200
        return
    assert valid, "accepted a value outside the allow-lists"
    check_rendered(cf)


@fuzz(2)
@given(
    st.lists(
        st.one_of(st.binary(max_size=60), st.sampled_from([b";", b"\\;", b"#", b" #", b":"])),
        max_size=20,
    ).map(b"\n".join)
)
def test_parse_callfile_is_total(data: bytes) -> None:
    for key, value in parse_callfile(data):
        assert "\n" not in key + value
        assert value == value.strip("".join(map(chr, range(33)))) or not value


@st.composite
def fax_policies(draw: st.DrawFn) -> Fax:
    """Fax settings as the policy allows them (what callfile_for gets from the admin)."""
    token = st.from_regex(r"[A-Za-z0-9_+-]{1,30}", fullmatch=True)
    channel_part = st.from_regex(r"[A-Za-z0-9/@+._:-]{0,30}", fullmatch=True)
    words = st.from_regex(r"[A-Za-z0-9._-]{1,10}( [A-Za-z0-9._-]{1,10}){0,3}", fullmatch=True)
    return Fax(
        channel=draw(channel_part) + "{number}" + draw(channel_part),
        context=draw(token),
        extension=draw(token),
        max_retries=draw(st.integers(0, 20)),
        retry_time=draw(st.integers(10, 86400)),
        wait_time=draw(st.integers(5, 600)),
        caller_id=draw(st.none() | st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True)),
        header_info=draw(st.none() | words),
        local_station_id=draw(
            st.none() | st.from_regex(r"\+?[0-9]{1,10}( [0-9]{1,5}){0,2}", fullmatch=True)
        ),
    )


def job(number_dialled: str, text: str) -> Job:
    """A job whose mail-derived fields (subject, addresses, number as given) are `text`."""
    return Job(
        id="9c1e0b2f7a3d4e11",
        created=0.0,
        state="queueing",
        sender=text,
        envelope_sender=text,
        author=text,
        reply_to=text,
        subject=text,
        number_given=text,
        number_e164=text,
        number_dialled=number_dialled,
        pages=1,
        digest=text,
        message_id=text,
        proof="dkim",
        dkim_domain=text,
        language="ja",
        tiff="/var/spool/asterisk/fax/9c1e0b2f7a3d4e11.tif",
        render_seconds=0.1,
        tiff_bytes=1,
    )


numbers_as_typed = st.one_of(
    st.from_regex(r"\+?[0-9][0-9.-]{0,16}", fullmatch=True),
    st.sampled_from(["03-1234-5678", "+81312345678", "0120-123-456", "110", "+1 555 0100"]),
    st.builds(lambda n, s: n + s, st.sampled_from(["0312345678", "+4930123456"]), hostile_text),
    hostile_text,
)


@fuzz(2)
@given(fax_policies(), numbers_as_typed, st.sampled_from(["JP", "DE", "US"]), hostile_text)
def test_call_file_from_a_mail_never_carries_mail_text(
    fax: Fax, given_number: str, region: str, text: str
) -> None:
    try:
        number = parse_number(given_number, region)
    except Refusal as refusal:
        assert refusal.reply.code == "553"
        dialled = given_number  # what a broken caller could pass straight through
    else:
        dialled = number.dialled
        if not number.short:
            assert dialled.isdigit() and dialled.isascii(), repr(dialled)
    marker = "\x00MAILTEXT" + text
    try:
        cf = callfile_for(job(dialled, marker), fax)
    except ValueError:
        assert not (dialled.isascii() and dialled.isdigit() and len(dialled) <= 30)
        return
    data = check_rendered(cf)
    assert b"MAILTEXT" not in data
    assert ("Setvar", f"FAXNUMBER={dialled}") in parse_callfile(data)
    assert cf.channel == fax.channel.replace("{number}", dialled)


def test_policy_refuses_what_the_call_file_writer_would_refuse() -> None:
    # Found by the fuzzer: these passed `faxmail policy check`, then every fax got 451.
    with pytest.raises(ValueError, match="placeholder"):
        Fax(channel="PJSIP/{number}@{trunk}")
    with pytest.raises(ValueError):
        Fax(context="c" * 80)
    with pytest.raises(ValueError):
        Fax(header_info="A" * 101)
    longest = Fax(context="c" * 79, extension="e" * 79, header_info="A" * 100)
    assert callfile_for(job("0312345678", "x"), longest).context == "c" * 79


# =============================================================================================
# 3. Header text
# =============================================================================================

header_texts = st.one_of(
    header_values.map(lambda b: b.decode("ascii", "surrogateescape")),  # as compat32 gives it
    st.lists(
        st.one_of(
            hostile_text,
            encoded_word().map(lambda b: b.decode("ascii", "surrogateescape")),
            cut_iso2022jp_words().map(lambda b: b.decode("ascii")),
        ),
        max_size=6,
    ).map(" ".join),
    st.text(),
    surrogate_soup,
)


@fuzz(5)
@given(header_texts, st.one_of(st.just(HEADER_TEXT_LIMIT), st.integers(0, 2000)))
@example("\udc80\ud800", HEADER_TEXT_LIMIT)
@example("=?utf-7?Q?+2AA-+3IA-?= \udcff", HEADER_TEXT_LIMIT)
def test_decode_header_text_is_total_bounded_and_inert(value: str, limit: int) -> None:
    text = decode_header_text(value, limit=limit)
    assert_one_inert_line(text, limit)
    assert text == text.lstrip()


@fuzz(3)
@given(
    st.one_of(
        st.text(),
        hostile_text,
        surrogate_soup,
        st.binary().map(lambda b: b.decode("ascii", "surrogateescape")),
    )
)
def test_from_8bit_is_total(value: str) -> None:
    text = from_8bit(value)
    assert not re.search("[\udc80-\udcff]", text) or not re.search("[\udc80-\udcff]", value)
    if not re.search("[\udc80-\udcff]", value):
        assert text == value


# Regression tests for what the fuzzing found (plain examples, so they run whatever the profile).


def test_from_8bit_with_a_surrogate_that_is_not_a_byte() -> None:
    # RFC 2231 names in utf-7 or unicode_escape decode to lone surrogates next to escaped bytes:
    # from_8bit raised UnicodeEncodeError (extraction crashed: 451 for a mail that must get 5xx).
    assert from_8bit("\udc80\ud800") == "\x80?"
    assert from_8bit("\ud800\udce6\udc97\udca5") == "?日"
    assert decode_header_text("\udcff\ud800x") == "ÿ?x"
    assert decode_header_text("\ud800\udc80.pdf") == "? .pdf"


@pytest.mark.parametrize(
    "param", [b"filename*=utf-7''+2AA-+3IA-.pdf", b"filename*=unicode_escape''%5Cudc80%5Cud800.pdf"]
)
def test_file_name_decoding_to_lone_surrogates_does_not_crash_extraction(param: bytes) -> None:
    raw = (
        b"From: a@example.com\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; " + param + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(_PDF)
    )
    documents, refusal = run_pipeline(raw)
    assert refusal is None and documents is not None
    [(kind, data, label)] = documents
    assert (kind, data) == ("pdf", _PDF)
    assert label.startswith("attachment 1 (_") and label.endswith(".pdf)")
