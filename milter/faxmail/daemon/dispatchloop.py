"""The dispatcher as a thread of faxmail-milter: one per host, started after repair().

It runs `Dispatcher.tick()` whenever faxmail-notify pokes it (a call ended), at the queue's
next due time (a retry's delay, a send-later time, the end of quiet hours), and at least every
POLL_S seconds: a lost poke, a job another host queued, or a fault it retries after costs at
most that long. Why a thread and not a service of its own: queue/__init__.py.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from datetime import datetime
from pathlib import Path

from faxmail.outbound.dispatch import Dispatcher
from faxmail.outbound.wake import listen, wake_socket
from faxmail.store.errors import StoreUnavailable

log = logging.getLogger("faxmail.dispatch")

POLL_S = 3.0


def seconds_until(due: datetime | None, now: datetime, poll_s: float = POLL_S) -> float:
    """How long to sleep: until `due`, at most `poll_s`, never negative."""
    if due is None:
        return poll_s
    return max(0.0, min(poll_s, (due - now).total_seconds()))


class DispatchThread:
    def __init__(self, dispatcher: Dispatcher, state_dir: Path) -> None:
        self.dispatcher = dispatcher
        self.state_dir = state_dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._socket: socket.socket | None = None

    def start(self) -> None:
        try:
            self._socket = listen(self.state_dir, self.dispatcher.spool.owner)
        except OSError as exc:
            log.warning("no wake socket (calls start within %g s instead): %s", POLL_S, exc)
        self._thread.start()
        log.info("dispatcher started on host %s", self.dispatcher.host)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=POLL_S + 5)
        if self._socket is not None:
            self._socket.close()
            wake_socket(self.state_dir).unlink(missing_ok=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                due = self.dispatcher.tick()
            except StoreUnavailable as exc:  # the database is down: one line, not a traceback
                log.error("dispatcher: the job store failed; trying again in %g s: %s", POLL_S, exc)
                due = None
            except Exception:  # a fault (the store locked...) is logged and retried
                log.exception("dispatcher: tick failed; trying again in %g s", POLL_S)
                due = None
            self._sleep(seconds_until(due, self.dispatcher.clock()))

    def _sleep(self, seconds: float) -> None:
        if self._socket is None:
            self._stop.wait(seconds)
            return
        ready, _, _ = select.select([self._socket], [], [], seconds)
        if ready:
            try:
                while True:  # drain: several pokes are one wake
                    self._socket.recv(64, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass
            except OSError as exc:
                log.warning("wake socket: %s", exc)
