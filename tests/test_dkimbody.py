"""The streamed DKIM body hash agrees with dkimpy's in-memory canonicalisation, byte for byte."""

from __future__ import annotations

import hashlib
import io
import random

import dkim
import pytest
from dkim.canonicalization import Relaxed, Simple

from faxmail.outbound import dkimbody
from faxmail.outbound.dkimbody import BodySpec, body_hash, read_header_block

# Line ends, bare CR and LF, runs of white space: where canonicalisations differ.
ALPHABET = [b"a", b"b", b" ", b"  ", b"\t", b"\r", b"\n", b"\r\n", b"\r\n\r\n"]


def expected(body: bytes, relaxed: bool, length: int | None) -> tuple[bytes, int]:
    _, dkimpy_body = dkim.rfc822_parse(b"A: b\r\n\r\n" + body)  # dkimpy's view of the body
    canonical = (Relaxed if relaxed else Simple).canonicalize_body(dkimpy_body)
    hashed = canonical if length is None else canonical[:length]
    return hashlib.sha256(hashed).digest(), len(canonical)


SIZES = [(1, 1), (2, 3), (3, 2), (7, 5), (5, 64 * 1024), (dkimbody.BLOCK, dkimbody.LINE_PIECE)]


@pytest.mark.parametrize(("block", "piece"), SIZES, ids=lambda n: str(n))
def test_random_bodies_hash_as_dkimpy_does(
    block: int, piece: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny blocks and pieces cut lines (and CRLFs) anywhere: the carry-over must not matter.
    monkeypatch.setattr(dkimbody, "BLOCK", block)
    monkeypatch.setattr(dkimbody, "LINE_PIECE", piece)
    rng = random.Random(block * 100 + piece)
    for _ in range(1500):
        body = b"".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 16)))
        for relaxed in (False, True):
            for length in (None, 0, 5):
                got = body_hash(
                    io.BytesIO(b"Head\r\n\r\n" + body), 8, BodySpec(relaxed, b"rsa-sha256", length)
                )
                assert (got.digest, got.canonical_length) == expected(body, relaxed, length), body


def test_long_bodies_across_blocks_hash_as_dkimpy_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lines, runs of empty lines and white space that straddle the blocks' and pieces' edges.
    monkeypatch.setattr(dkimbody, "BLOCK", 997)
    monkeypatch.setattr(dkimbody, "LINE_PIECE", 331)
    rng = random.Random(7)
    words = [b"base64+/=", b" ", b"\t ", b"\r\n", b"\n", b"\r", b"\r\n" * 40, b"x" * 700]
    for _ in range(60):
        body = b"".join(rng.choice(words) for _ in range(rng.randint(0, 400)))
        for relaxed in (False, True):
            got = body_hash(io.BytesIO(body), 0, BodySpec(relaxed, b"rsa-sha256", None))
            assert (got.digest, got.canonical_length) == expected(body, relaxed, None)


@pytest.mark.parametrize(
    ("body", "relaxed", "canonical"),
    [
        (b"", False, b"\r\n"),  # simple: an empty body is one CRLF
        (b"", True, b""),
        (b"a \t b  \r\n\r\n\r\n", True, b"a b\r\n"),
        (b"a \t b  \r\n\r\n\r\n", False, b"a \t b  \r\n"),
        (b"unterminated  ", True, b"unterminated \r\n"),  # dkimpy keeps that one space
    ],
)
def test_rfc6376_examples(body: bytes, relaxed: bool, canonical: bytes) -> None:
    got = body_hash(io.BytesIO(body), 0, BodySpec(relaxed, b"rsa-sha256", None))
    assert got.digest == hashlib.sha256(canonical).digest()
    assert got.canonical_length == len(canonical)


def test_header_block_ends_at_the_empty_line() -> None:
    mail = io.BytesIO(b"From: a@example.jp\r\nSubject: x\r\n folded\r\n\r\nbody\r\n")
    header, offset = read_header_block(mail)
    assert header == b"From: a@example.jp\r\nSubject: x\r\n folded\r\n"
    assert mail.getvalue()[offset:] == b"body\r\n"


def test_bad_signature_tags_are_format_errors() -> None:
    with pytest.raises(dkim.MessageFormatError):
        BodySpec.of({b"a": b"rsa-sha256", b"c": b"weird/simple"})
    with pytest.raises(dkim.MessageFormatError):
        BodySpec.of({b"a": b"rsa-md5"})
    with pytest.raises(dkim.MessageFormatError):
        BodySpec.of({b"a": b"rsa-sha256", b"l": b"ten"})
