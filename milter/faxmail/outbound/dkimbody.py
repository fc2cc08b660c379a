"""DKIM body hashes computed by streaming the spooled mail, so the body is never in memory.

dkimpy canonicalises a body as one `bytes` (a 20 MB mail cost 70 MiB of copies). Here the body
is read line by line from the spool file and canonicalised as it goes (RFC 6376 §3.4.3/§3.4.4,
with dkimpy's exact quirks, so both agree on every mail); authenticate.py then lets dkimpy
check only the header signature against the body hash computed here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import dkim
from dkim.canonicalization import CanonicalizationPolicy

LINE_PIECE = 64 * 1024  # a longer line is read in pieces of this size
CRLF = b"\r\n"
_WSP_RUN = re.compile(rb"[\t ]+")


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
    carry = b""  # a byte read ahead to see whether a CR was the first half of CRLF
    while True:
        piece = carry + message.readline(LINE_PIECE)
        carry = b""
        if not piece:
            break
        if piece.endswith(b"\n"):
            # dkimpy splits lines on \r?\n: one CR before the LF belongs to the line break.
            canon.piece(piece[:-2] if piece.endswith(b"\r\n") else piece[:-1], line_ends=True)
            continue
        if piece.endswith(b"\r"):  # a piece of a long line, cut between CR and LF?
            carry = message.read(1)
            if carry == b"\n":
                carry = b""
                canon.piece(piece[:-1], line_ends=True)
                continue
        canon.piece(piece, line_ends=False)
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
