"""How much CPU *other* work took while the benchmarks ran: the honest noise figure.

Every second, the CPU ticks of every process are read from /proc. Ours are the descendants of
this process plus the Postfix instances it started (their master daemonizes to init, so it is
recognised by MAIL_CONFIG under our fxb- work dirs); everything else — other sessions' test
suites, an Asterisk under test — is "foreign". Ticks of processes that lived less than one
sample are missed, so the figure is a lower bound.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

_TCK = os.sysconf("SC_CLK_TCK")
# Lab dirs are tempfile.mkdtemp(prefix="fxb-...")
_OURS_MARK = "MAIL_CONFIG=" + os.path.join(tempfile.gettempdir(), "fxb-")


class LoadWatch(threading.Thread):
    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(name="loadwatch", daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (time, foreign CPU fraction of machine)
        self._halt = threading.Event()
        self._ours_root = os.getpid()
        self._postfix: dict[tuple[int, str], bool] = {}  # (pid, start time) → ours?
        self._cpus = len(os.sched_getaffinity(0))

    def _scan(self) -> dict[int, tuple[int, int, str]]:
        """pid → (ppid, ticks, start time)"""
        out: dict[int, tuple[int, int, str]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), fields[19])
        return out

    def _is_our_postfix(self, pid: int, start: str) -> bool:
        key = (pid, start)
        if key not in self._postfix:
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")
            except OSError:
                env = ""
            self._postfix[key] = _OURS_MARK in env
        return self._postfix[key]

    def _ours(self, procs: dict[int, tuple[int, int, str]]) -> set[int]:
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        roots = [self._ours_root]
        roots += [p for p in children.get(1, []) if self._is_our_postfix(p, procs[p][2])]
        ours: set[int] = set()
        while roots:
            pid = roots.pop()
            if pid not in ours:
                ours.add(pid)
                roots += children.get(pid, [])
        return ours

    def run(self) -> None:
        before = self._scan()
        t_before = time.monotonic()
        while not self._halt.wait(self.interval):
            now = self._scan()
            t_now = time.monotonic()
            ours = self._ours(now)
            foreign = 0
            for pid, (_, ticks, start) in now.items():
                if pid in ours:
                    continue
                old = before.get(pid)
                # a pid seen for the first time (or reused) counts from zero
                foreign += ticks - (old[1] if old and old[2] == start else 0)
            elapsed = (t_now - t_before) * _TCK * self._cpus
            self.samples.append((t_now, min(1.0, foreign / elapsed) if elapsed else 0.0))
            before, t_before = now, t_now

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def window(self, since: float) -> dict[str, float]:
        """Foreign CPU (fraction of the whole machine) over samples taken after ``since``."""
        values = [v for t, v in self.samples if t >= since]
        if not values:
            return {"mean": 0.0, "max": 0.0}
        return {"mean": statistics.fmean(values), "max": max(values)}
