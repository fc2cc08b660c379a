"""What-if milters for benchmark 1 (not faxmail): the floor for a milter that, like faxmail,
answers ACCEPT at DATA for mail that is not its business, under different protocol
negotiations.

Usage: ``python -m bench.floor_milter SOCKET [--variant NAME]``. Every variant answers CONTINUE
at MAIL and RCPT and ACCEPT at DATA; pymilter negotiates HELO, unknown commands, headers,
end of headers and body away (they are not implemented). The variants differ in what else
Postfix is asked for:

- ``naive``: connect, MAIL, RCPT and DATA, each answered (what faxmail negotiates today).
- ``noreply``: connect, MAIL and RCPT no-reply (not usable by faxmail: it refuses at RCPT).
- ``lean``: no connect stage at all (P_NOCONNECT); the client address comes as the macro
  ``{client_addr}`` at MAIL instead (``setsymlist``), with ``{auth_authen}``. MAIL, RCPT and
  DATA answered. Usable on any socket.
- ``lean-nr``: ``lean`` + MAIL no-reply (P_NR_MAIL): round trips per mail are the option
  negotiation, RCPT and DATA. For unix sockets only (no-reply on TCP stalls behind Nagle).
- ``lean-nr-noabort``: ``lean-nr`` + no Python abort callback (Postfix sends ABORT after
  every accepted mail; libmilter then answers nothing and pymilter's C wrapper returns
  without entering Python when no callback is set).

The macros seen at MAIL by the first three transactions are printed to stdout (``macros
...``), so the benchmark can prove that ``{client_addr}`` really arrives.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

import Milter
import milter as libmilter  # pymilter's C module

#: What faxmail reads at MAIL FROM: the SASL login and (with no connect stage) the client.
MAIL_MACROS = ("{auth_authen}", "{client_addr}")
VARIANTS = ("naive", "noreply", "lean", "lean-nr", "lean-nr-noabort")

_shown = 0
_shown_lock = threading.Lock()


def _show_macros(m: Milter.Base, mailfrom: str) -> None:
    global _shown
    with _shown_lock:
        if _shown >= 3:
            return
        _shown += 1
    values = {name: m.getsymval(name) for name in ("{client_addr}", "{auth_authen}", "i")}
    print(f"macros mail_from={mailfrom} {values}", flush=True)


class Naive(Milter.Base):  # type: ignore[misc]  # pymilter has no type hints
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def envfrom(self, mailfrom: str, *params: str) -> int:
        _show_macros(self, mailfrom)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def envrcpt(self, to: str, *params: str) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def data(self) -> int:
        return Milter.ACCEPT  # type: ignore[no-any-return]


class NoReply(Naive):
    # the same callbacks, each marked no-reply
    connect = Milter.noreply(Naive.connect)
    envfrom = Milter.noreply(Naive.envfrom)
    envrcpt = Milter.noreply(Naive.envrcpt)


class Lean(Milter.Base):  # type: ignore[misc]
    """No connect callback: Milter.Base's own is @nocallback, so P_NOCONNECT is negotiated."""

    def negotiate(self, opts: list[int]) -> int:
        # Not @Milter.symlist: pymilter 1.0.5 hands the C module bytes where it parses "s"
        # (str), the TypeError is swallowed by Base.negotiate, which then returns ALL_OPTS:
        # no stage is skipped at all, and the list is not set either.
        rc: int = super().negotiate(opts)
        self._ctx.setsymlist(Milter.M_ENVFROM, " ".join(MAIL_MACROS))
        return rc

    def envfrom(self, mailfrom: str, *params: str) -> int:
        _show_macros(self, mailfrom)
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def envrcpt(self, to: str, *params: str) -> int:
        return Milter.CONTINUE  # type: ignore[no-any-return]

    def data(self) -> int:
        return Milter.ACCEPT  # type: ignore[no-any-return]


class LeanNoReply(Lean):
    envfrom = Milter.noreply(Lean.envfrom)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--variant", choices=VARIANTS, default="naive")
    args = ap.parse_args()
    os.umask(0o000)  # smtpd (user postfix) must be able to connect to the unix socket
    Milter.factory = {
        "naive": Naive,
        "noreply": NoReply,
        "lean": Lean,
        "lean-nr": LeanNoReply,
        "lean-nr-noabort": LeanNoReply,
    }[args.variant]
    if args.variant == "lean-nr-noabort":
        # Milter.runmilter sets every callback, then blocks in main(); set them ourselves
        _runmilter_without_abort(args.socket)
    else:
        Milter.runmilter("floor", args.socket, 600, True)
    return 0


def _runmilter_without_abort(socket: str) -> None:
    """Milter.runmilter, less the abort callback: without one, pymilter's C wrapper answers
    libmilter at once instead of taking the GIL to call Base.abort."""
    lm: Any = libmilter  # the C module has no type hints
    lm.set_abort_callback(None)
    main_loop = lm.main

    def start_without_abort() -> None:
        lm.set_abort_callback(None)  # runmilter has just set it again
        main_loop()

    lm.main = start_without_abort
    try:
        Milter.runmilter("floor", socket, 600, True)
    finally:
        lm.main = main_loop


if __name__ == "__main__":
    sys.exit(main())
