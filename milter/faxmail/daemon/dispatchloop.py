"""The dispatcher as a thread of faxmail-milter: one per host, started after repair().

It runs `Dispatcher.tick()` whenever faxmail-notify or the milter of this host pokes it (a call
ended, a job queued), when a PostgreSQL store announces that any host changed the queue (the
store's `dispatch_listener`), at the queue's next due time (a retry's delay, a send-later time,
the end of quiet hours), and at least every POLL_S seconds: a lost poke, a listener that is
down, or a fault it retries after costs at most that long. Why a thread and not a service of
its own: queue/__init__.py.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from datetime import datetime
from pathlib import Path

from faxmail.outbound.dispatch import Dispatcher
from faxmail.outbound.wake import listen, wake, wake_socket
from faxmail.store.errors import StoreUnavailable
from faxmail.store.interface import DispatchListener

log = logging.getLogger("faxmail.dispatch")

POLL_S = 3.0


def seconds_until(due: datetime | None, now: datetime, poll_s: float = POLL_S) -> float:
    """How long to sleep: until `due`, at most `poll_s`, never negative."""
    if due is None:
        return poll_s
    return max(0.0, min(poll_s, (due - now).total_seconds()))


class DispatchThread:
    def __init__(self, dispatcher: Dispatcher, state_dir: Path, poll_s: float = POLL_S) -> None:
        self.dispatcher = dispatcher
        self.state_dir = state_dir
        self.poll_s = poll_s  # read after each tick: the longest sleep that follows it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._socket: socket.socket | None = None
        self._listener: DispatchListener | None = None
        self._listener_down = False  # said once; quiet until it is back

    def start(self) -> None:
        try:
            self._socket = listen(self.state_dir, self.dispatcher.spool.owner)
        except OSError as exc:
            log.warning("no wake socket (calls start within %g s instead): %s", POLL_S, exc)
        self._thread.start()
        log.info("dispatcher started on host %s", self.dispatcher.host)

    def stop(self) -> None:
        self._stop.set()
        if self._socket is not None:
            wake(self.state_dir)  # out of its select now, not after its sleep
        if self._thread.is_alive():
            self._thread.join(timeout=POLL_S + 5)
        if self._socket is not None:
            self._socket.close()
            wake_socket(self.state_dir).unlink(missing_ok=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._listen()  # before the tick: what changes after it is heard
                due = self._tick()
                self._sleep(seconds_until(due, self.dispatcher.clock(), self.poll_s))
        finally:
            self._drop_listener()

    def _tick(self) -> datetime | None:
        try:
            return self.dispatcher.tick()
        except StoreUnavailable as exc:  # the database is down: one line, not a traceback
            log.error(
                "dispatcher: the job store failed; trying again in %g s: %s", self.poll_s, exc
            )
        except Exception:  # a fault (the store locked...) is logged and retried
            log.exception("dispatcher: tick failed; trying again in %g s", self.poll_s)
        return None

    def _listen(self) -> None:
        """Open the store's listener if it has one and none is open (at start, after a
        break); while it cannot be opened, the POLL_S tick does its work."""
        if self._listener is not None:
            return
        try:
            self._listener = self.dispatcher.store.dispatch_listener()
        except StoreUnavailable as exc:
            if not self._listener_down:
                log.warning("dispatcher: %s", self._missing_wakes(exc))
                self._listener_down = True
            return
        if self._listener is not None and self._listener_down:
            log.info("dispatcher: hearing other hosts' wakes again")
            self._listener_down = False

    def _drop_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _sleep(self, seconds: float) -> None:
        sources = [s for s in (self._socket, self._listener) if s is not None]
        if not sources:
            self._stop.wait(seconds)
            return
        ready, _, _ = select.select(sources, [], [], seconds)
        if self._socket is not None and self._socket in ready:
            self._drain_socket(self._socket)
        if self._listener is not None and self._listener in ready:
            try:
                self._listener.drain()  # several announcements are one wake
            except StoreUnavailable as exc:  # the server went away: open anew on a later tick
                log.warning("dispatcher: %s", self._missing_wakes(exc))
                self._listener_down = True
                self._drop_listener()

    @staticmethod
    def _drain_socket(wake: socket.socket) -> None:
        try:
            while True:  # drain: several pokes are one wake
                wake.recv(64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        except OSError as exc:
            log.warning("wake socket: %s", exc)

    def _missing_wakes(self, exc: StoreUnavailable) -> str:
        """One log line: what a listener that is down costs, and why (a driver's message
        may span lines)."""
        why = " ".join(str(exc).split())
        return f"no wakes from other hosts (their changes are seen within {self.poll_s:g} s): {why}"
