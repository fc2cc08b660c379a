"""DKIM body hashes computed by streaming the spooled mail, so the body is never in memory.

dkimpy canonicalises a body as one `bytes` (a 20 MB mail cost 70 MiB of copies). Here the body
is read from the spool file a block of whole lines at a time and canonicalised as it goes
(RFC 6376 §3.4.3/§3.4.4, with dkimpy's exact quirks, so both agree on every mail);
authenticate.py then lets dkimpy check only the header signature against the body hash computed
here. A block is canonicalised by a few C-speed passes over its bytes, not line by line in
Python: a 4 MB attachment is some 50,000 lines, and a loop over them cost 65-85 ms a mail.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import dkim
from dkim.canonicalization import CanonicalizationPolicy

BLOCK = 256 * 1024  # read at a time; its whole lines are canonicalised together
LINE_PIECE = 64 * 1024  # of a longer line, this much is hashed before its end is seen
CRLF = b"\r\n"
_WSP_RUN = re.compile(rb"[\t ]+")
_LINE_END = re.compile(rb"\r?\n")  # dkimpy splits lines here: a CR before LF is the break's


@dataclass(frozen=True)
class BodySpec:
    """What a signature's bh= covers: canonicalisation, hash, and optional length (l=)."""

    relaxed: bool
    algorithm: bytes  # the a= tag, e.g. b"rsa-sha256"
    length: int | None  # the l= tag

    @classmethod
    def of(cls, sig: dict[bytes, bytes]) -> BodySpec:
        """From dkimpy's parsed tags; raises dkim.MessageFormatError on bad c=, a= or l=."""
        try:
            canon = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
            length = int(sig[b"l"]) if b"l" in sig else None
        except (dkim.InvalidCanonicalizationPolicyError, ValueError) as exc:
            raise dkim.MessageFormatError(f"bad signature tag: {exc}") from None
        algorithm = sig.get(b"a", b"")
        if algorithm not in dkim.HASH_ALGORITHMS:
            raise dkim.MessageFormatError(f"unknown algorithm {algorithm!r}")
        return cls(canon.body_algorithm.name == b"relaxed", algorithm, length)


@dataclass(frozen=True)
class BodyHash:
    digest: bytes  # of the canonical body, cut at l= if the signature has one
    canonical_length: int  # of the whole canonical body: more than l= means unsigned content


class _Sink:
    """Hashes the canonical stream up to `limit` bytes and counts all of it."""

    def __init__(self, hasher: Callable[[], hashlib._Hash], limit: int | None) -> None:
        self.hash = hasher()
        self.limit = limit
        self.length = 0

    def write(self, data: bytes) -> None:
        if self.limit is None:
            self.hash.update(data)
        elif self.length < self.limit:
            self.hash.update(data[: self.limit - self.length])
        self.length += len(data)


class _Canonicalizer:
    """Feeds canonical body bytes to a sink, one line (or piece of a line) at a time.

    Empty lines are held back until a non-empty one follows: trailing empty lines are ignored.
    """

    def __init__(self, relaxed: bool, sink: _Sink) -> None:
        self.relaxed = relaxed
        self.sink = sink
        self.empty_lines = 0
        self.in_line = False  # content of the current line has been written
        self.held_space = b""  # relaxed: whitespace at a piece's end, kept until we know more
        self.wrote_any = False

    def lines(self, block: bytes) -> None:
        """Whole lines: `block` ends with LF (its first line may continue a piece)."""
        if block.count(b"\n") != block.count(CRLF):
            block = _LINE_END.sub(CRLF, block)
        if self.relaxed:
            # Runs of WSP become one space, so trailing WSP is then exactly one space. (The
            # regular expression is slow on a clean block: a memchr-speed test goes first.)
            block = self.held_space + block
            if b"\t" in block or b"  " in block:
                block = _WSP_RUN.sub(b" ", block)
            block = block.replace(b" \r\n", CRLF)
            self.held_space = b""
        # The empty lines at the block's end are held back: the body may end with them. The
        # tail of CR/LF bytes is CRLFs and bare CRs; the empty lines follow its last bare CR.
        tail = len(block) - len(block.rstrip(b"\r\n"))
        bare_cr = block.rfind(b"\r\r", len(block) - tail)
        empties = (len(block) - (bare_cr + 1 if bare_cr >= 0 else len(block) - tail)) // 2
        core = block[: len(block) - 2 * empties]
        if not core:
            if self.in_line:  # the first CRLF ends the line begun by a piece
                self.sink.write(CRLF)
                self.in_line = False
                empties -= 1
            self.empty_lines += empties
            return
        if not self.in_line:
            self.sink.write(CRLF * self.empty_lines)
        self.sink.write(core)
        self.sink.write(CRLF)  # the core ends inside a line: the first CRLF ends it
        self.empty_lines = empties - 1
        self.in_line = False
        self.wrote_any = True

    def piece(self, data: bytes, line_ends: bool) -> None:
        if self.relaxed:
            data = _WSP_RUN.sub(b" ", self.held_space + data)
            kept = data.rstrip(b" ")
            # Trailing whitespace of a complete line goes; a piece's is held for what follows.
            self.held_space = b"" if line_ends else data[len(kept) :]
            data = kept
        if data:
            if not self.in_line:
                self.sink.write(CRLF * self.empty_lines)
                self.empty_lines = 0
                self.in_line = True
            self.sink.write(data)
            self.wrote_any = True
        if line_ends:
            if self.in_line:
                self.sink.write(CRLF)
            else:
                self.empty_lines += 1
            self.in_line = False

    def end(self) -> None:
        # dkimpy ends an unterminated last line with CRLF, keeping its trailing whitespace.
        if self.held_space:
            if not self.in_line:
                self.sink.write(CRLF * self.empty_lines)
                self.in_line = True
            self.sink.write(self.held_space)
        if self.in_line:
            self.sink.write(CRLF)
        elif not self.wrote_any and not self.relaxed:
            self.sink.write(CRLF)  # "simple": an empty body is one CRLF; "relaxed": nothing


def body_hash(message: IO[bytes], body_offset: int, spec: BodySpec) -> BodyHash:
    """Hash the body that starts at `body_offset` in `message` the way `spec` says."""
    sink = _Sink(dkim.HASH_ALGORITHMS[spec.algorithm], spec.length)
    canon = _Canonicalizer(spec.relaxed, sink)
    message.seek(body_offset)
    rest = b""  # the start of a line whose end is not read yet
    while data := message.read(BLOCK):
        data = rest + data
        whole = data.rfind(b"\n") + 1
        if whole:
            canon.lines(data[:whole])
        rest = data[whole:]
        if len(rest) > LINE_PIECE:  # a long line: hash it on, but keep a CR that may pair
            keep = 1 if rest.endswith(b"\r") else 0  # with the next block's LF
            canon.piece(rest[: len(rest) - keep], line_ends=False)
            rest = rest[len(rest) - keep :]
    if rest:
        canon.piece(rest, line_ends=False)
    canon.end()
    return BodyHash(sink.hash.digest(), sink.length)


def read_header_block(message: IO[bytes]) -> tuple[bytes, int]:
    """The header lines (up to, not including, the empty line) and where the body starts."""
    message.seek(0)
    lines: list[bytes] = []
    while True:
        line = message.readline()
        if line in (b"", b"\r\n", b"\n"):
            return b"".join(lines), message.tell()
        lines.append(line)
