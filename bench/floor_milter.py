"""What-if milters for benchmark 1 (not faxmail): the floor for a milter that, like faxmail,
answers ACCEPT at DATA for mail that is not its business.

Usage: ``python -m bench.floor_milter SOCKET [--noreply]``. It implements only connect,
envfrom, envrcpt and data (pymilter negotiates the other stages away). With ``--noreply``
connect, envfrom and envrcpt are marked no-reply, so Postfix does not wait for their answers:
on a unix socket that saves round trips; on TCP the notes measured a 40 ms Nagle stall.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import Milter


class Floor(Milter.Base):  # type: ignore[misc]  # pymilter has no type hints
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def envfrom(self, mailfrom: str, *params: str) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def envrcpt(self, to: str, *params: str) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def data(self) -> int:
        return Milter.ACCEPT  # type: ignore[no-any-return]


class FloorNoReply(Floor):
    @Milter.noreply  # type: ignore[untyped-decorator]
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    @Milter.noreply  # type: ignore[untyped-decorator]
    def envfrom(self, mailfrom: str, *params: str) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    @Milter.noreply  # type: ignore[untyped-decorator]
    def envrcpt(self, to: str, *params: str) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--noreply", action="store_true")
    args = ap.parse_args()
    os.umask(0o000)  # smtpd (user postfix) must be able to connect to the unix socket
    Milter.factory = FloorNoReply if args.noreply else Floor
    Milter.runmilter("floor", args.socket, 600, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
