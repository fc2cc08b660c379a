"""Results, statistics and the round-robin runner shared by every benchmark.

The machine is shared and noisy, so nothing here trusts an absolute figure: each benchmark
measures its baseline in the same invocation, variants run interleaved round by round (the
order rotates each round, so no variant always runs right after the same neighbour), and a
ratio is taken per round (variant / baseline of that round) before its median is reported.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The repository root (bench/..).
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One measured quantity with one sample per round. A ratio is a row of its own whose
    samples are the per-round ratios (unit "×")."""

    label: str
    unit: str
    samples: list[float]
    goal: str | None = None  # e.g. "≤ 1.2×"
    met: bool | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "unit": self.unit,
            "samples": [round(x, 6) for x in self.samples],
            "median": self.median,
            "min": min(self.samples) if self.samples else None,
            "max": max(self.samples) if self.samples else None,
        }
        if self.goal is not None:
            out |= {"goal": self.goal, "met": self.met}
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Section:
    """What one benchmark reports: rows plus free-text notes (method, caveats, findings)."""

    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # per-benchmark details for the JSON
    table: list[str] = field(default_factory=list)  # Markdown lines; default: one row per Row
    seconds: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cpu_busy: float = 0.0  # whole machine, while the section ran
    cpu_steal: float = 0.0
    foreign_cpu: dict[str, float] = field(default_factory=dict)  # loadwatch.LoadWatch.window

    def row(self, label: str) -> Row:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(label)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "seconds": round(self.seconds, 1),
            "loadavg_before": self.load_before,
            "loadavg_after": self.load_after,
            "cpu_busy": round(self.cpu_busy, 3),
            "cpu_steal": round(self.cpu_steal, 4),
            "foreign_cpu": self.foreign_cpu,
            "rows": [r.summary() for r in self.rows],
            "notes": self.notes,
            "extra": self.extra,
        }


def ratio_row(
    label: str,
    numerator: Row,
    denominator: Row,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
    note: str = "",
) -> Row:
    """numerator / denominator per round (both measured in the same round), with an optional
    goal on the median."""
    values = [n / d for n, d in zip(numerator.samples, denominator.samples, strict=True) if d]
    row = Row(label, "×", values, note=note)
    if at_most is not None:
        row.goal, row.met = f"≤ {at_most:g}×", bool(values) and row.median <= at_most
    if at_least is not None:
        row.goal, row.met = f"≥ {at_least:g}×", bool(values) and row.median >= at_least
    return row


def interleaved(rounds: int, variants: Sequence[str], run: Callable[[str, int], None]) -> None:
    """Call ``run(variant, round)`` for every variant in every round, rotating the order."""
    for r in range(rounds):
        shift = r % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            run(variant, r)


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


class CpuMeter:
    """Whole-machine CPU busy fraction (all cores) between start() and stop(), from /proc/stat.

    Tells whether a run saturated both cores, and how much else was running."""

    def __init__(self) -> None:
        self._start: tuple[int, int, int] = (0, 0, 0)
        self.steal = 0.0  # fraction of CPU time the hypervisor gave to other guests

    @staticmethod
    def _read() -> tuple[int, int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        # guest times (fields 8, 9) are already counted in user and nice
        return sum(fields[:8]), idle, fields[7]

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        total, idle, steal = self._read()
        d_total = total - self._start[0]
        self.steal = (steal - self._start[2]) / d_total if d_total else 0.0
        return 1.0 - (idle - self._start[1]) / d_total if d_total else 0.0


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def timed_run(argv: Sequence[str], *, timeout: float, **popen: Any) -> float:
    """Run a command (check=True) and return its wall time in seconds.

    Not subprocess.run(timeout=...): without pipes it waits by polling with sleeps that grow
    to 50 ms, so a baseline timed that way comes out late by up to 50 ms (bare gs on a 5-page
    scan measured 0.265 s in every round). Here the wait blocks in waitpid and a timer kills
    a command that hangs.
    """
    t0 = time.perf_counter()
    with subprocess.Popen(list(argv), **popen) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            rc = proc.wait()
        finally:
            timer.cancel()
    elapsed = time.perf_counter() - t0
    if rc != 0:
        raise subprocess.CalledProcessError(rc, list(argv))
    return elapsed


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


#: The notes' bare Ghostscript command: the seed's device and resolution, A4, nothing else.
BARE_GS = [
    "gs",
    "-q",
    "-dSAFER",
    "-dBATCH",
    "-dNOPAUSE",
    "-dFIXEDMEDIA",
    "-dPDFFitPage",
    "-sPAPERSIZE=a4",
    "-sDEVICE=tiffg4",
    "-r204x196",
]
