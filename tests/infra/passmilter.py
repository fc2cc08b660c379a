"""A pass-through pymilter milter: the baseline for Postfix fixtures and benchmarks.

Usage: ``python tests/infra/passmilter.py SOCKET [--dump DIR]`` where SOCKET is a libmilter
spec (``unix:/path/sock``, ``inet:PORT@127.0.0.1``). Every callback returns CONTINUE and none
is marked @noreply: no-reply stages on TCP were measured to stall ~40 ms per mail
(Nagle + delayed ACK), and a baseline should cost what a real milter costs.

With ``--dump DIR`` each message is written to DIR/<queue-id>.eml exactly as the milter
reassembles it (headers as received + CRLF + body), which lets tests check that a
DKIM signature still verifies on what a milter sees.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

# Run as a script, this file's folder is sys.path[0], and its sibling dns.py would shadow
# dnspython for anything imported below that needs it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import Milter


# HDR_LEADSPC: Postfix then sends each header value exactly as written after the colon
# (leading space included). Without it, it drops one space after the colon, and rebuilding
# "name: value" breaks DKIM c=simple/ header hashing for a header written "Subject:x".
@Milter.header_leading_space
class PassMilter(Milter.Base):  # type: ignore[misc]  # pymilter ships no type hints
    """Accepts everything; optionally records each message."""

    dump_dir: Path | None = None

    def __init__(self) -> None:
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []

    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def envfrom(self, mailfrom: str, *params: str) -> int:
        self._headers = []
        self._body = []
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def envrcpt(self, to: str, *params: str) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def data(self) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def header(self, name: str, value: str) -> int:
        self._headers.append((name, value))
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def eoh(self) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def body(self, chunk: bytes) -> int:
        if self.dump_dir is not None:
            self._body.append(chunk)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def eom(self) -> int:
        if self.dump_dir is not None:
            self._dump(self.dump_dir)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def _dump(self, dump_dir: Path) -> None:
        # Folded header values arrive with bare LF line breaks (body chunks keep CRLF), so
        # normalise to CRLF the way a DKIM verifier must. Values are str as pymilter
        # decoded them (UTF-8 with surrogateescape); encoding back restores the bytes.
        lines = []
        for name, value in self._headers:
            raw = value.encode("utf-8", "surrogateescape")
            raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            lines.append(name.encode("ascii") + b":" + raw + b"\r\n")
        qid = self.getsymval("i") or f"noid-{os.getpid()}-{id(self)}"
        path = dump_dir / f"{qid}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(lines) + b"\r\n" + b"".join(self._body))
        tmp.rename(path)  # atomic, so a polling test never reads half a file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("socket", help="libmilter socket spec, e.g. unix:/tmp/x.sock")
    ap.add_argument("--dump", type=Path, help="write each reassembled message here")
    ap.add_argument("--timeout", type=int, default=600, help="MTA I/O timeout, seconds")
    args = ap.parse_args(argv)
    if args.dump is not None:
        args.dump.mkdir(parents=True, exist_ok=True)
        PassMilter.dump_dir = args.dump
    # libmilter creates the unix socket with mode 0777 & ~umask; Postfix's smtpd runs as
    # user postfix and needs write permission on it to connect.
    os.umask(0o000)
    Milter.factory = PassMilter
    print(f"passmilter listening on {args.socket}", file=sys.stderr, flush=True)
    Milter.runmilter("passmilter", args.socket, args.timeout, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
