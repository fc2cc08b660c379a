"""The machine, the versions, and the Markdown table."""

from __future__ import annotations

import datetime
import math
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from .common import ROOT, Row, Section, cpu_count


def _cmd(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "(missing)"
    return (out.stdout or out.stderr).strip()


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(missing)"


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])  # type: ignore[index]
    debian = Path("/etc/debian_version")
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model[1] if model else platform.processor(),
        "cores": cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "kernel": platform.release(),
        "debian": debian.read_text().strip() if debian.exists() else "",
        "git": _cmd(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
    }


def other_load() -> list[str]:
    """The busiest other processes right now (CPU % over their lifetime, as ps has it), to
    say honestly what else the machine was doing."""
    out = _cmd(["ps", "-eo", "pcpu,etimes,comm", "--sort=-pcpu", "--no-headers"])
    return [" ".join(line.split()) for line in out.splitlines()[:10]]


def versions() -> dict[str, str]:
    gs = _cmd(["gs", "--version"])
    im = re.search(r"ImageMagick (\S+)", _cmd(["/usr/bin/convert", "-version"]))
    tess = _cmd(["tesseract", "--version"]).split("\n")[0].split()[-1]
    postfix = _cmd(["postconf", "-d", "-h", "mail_version"])
    qpdf = _cmd(["qpdf", "--version"]).split("\n")[0].split()[-1]
    return {
        "python": platform.python_version(),
        "postfix": postfix,
        "ghostscript": gs,
        "qpdf": qpdf,
        "tesseract": tess,
        "imagemagick": im[1] if im else "(missing)",
        **{p: _pkg(p) for p in ("pymilter", "dkimpy", "dkimpy-milter", "img2pdf", "pillow")},
    }


def fmt(x: float) -> str:
    if math.isnan(x):
        return "–"
    if x == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:,.{min(digits, 4)}f}"


def _foreign(window: dict[str, float]) -> str:
    if not window:
        return "(not measured)"
    return (
        f"{100 * window['mean']:.0f} % of the machine on average "
        f"(up to {100 * window['max']:.0f} % in a second)"
    )


def cell(r: Row, unit: bool = False) -> str:
    """ "median (min – max)" of a row, for the per-benchmark tables."""
    text = fmt(r.median) + (f" {r.unit}" if unit and r.unit else "")
    if len(r.samples) > 1:
        text += f" ({fmt(min(r.samples))} – {fmt(max(r.samples))})"
    return text


def goal(r: Row) -> str:
    if r.goal is None:
        return ""
    return f"{r.goal} " + ("**met**" if r.met else "**missed**")


def _row(r: Row) -> str:
    lo, hi = (min(r.samples), max(r.samples)) if r.samples else (math.nan, math.nan)
    spread = f"{fmt(lo)} – {fmt(hi)}" if len(r.samples) > 1 else ""
    goal = r.goal or ""
    if r.met is not None:
        goal += " **met**" if r.met else " **missed**"
    return f"| {r.label} | {fmt(r.median)} {r.unit} | {spread} | {goal} | {r.note} |"


def markdown(info: dict[str, Any], sections: list[Section]) -> str:
    m, v = info["machine"], info["versions"]
    out = [
        f"Run of {m['date']} (`{info['command']}`, {info['seconds'] / 60:.1f} min, "
        f"git {m['git']}).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Debian {m['debian']}.",
        f"- Load: load average {info['load_before'][0]:.2f} at the start, "
        f"{info['load_after'][0]:.2f} at the end; CPU busy {100 * info['cpu_busy']:.0f} % "
        f"over the run (ours included), stolen by other guests {100 * info['cpu_steal']:.1f} %; "
        f"other processes on this machine (other sessions' test suites...) used "
        f"{_foreign(info['foreign_cpu'])}; per benchmark below.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "Medians over rounds; a ratio is taken per round (both sides measured in that round) "
        "and its median and min–max are shown.",
        "",
    ]
    for s in sections:
        out += [
            f"### {s.title}",
            "",
            f"{s.seconds:.0f} s; load average {s.load_before[0]:.2f} → {s.load_after[0]:.2f}; "
            f"CPU busy {100 * s.cpu_busy:.0f} %, steal {100 * s.cpu_steal:.1f} %; other "
            f"processes {_foreign(s.foreign_cpu)}.",
            "",
            *(
                s.table
                or [
                    "| measurement | median | min – max | goal | note |",
                    "|---|---:|---:|---|---|",
                    *(_row(r) for r in s.rows),
                ]
            ),
            "",
            *(n if n.startswith("  - ") else f"- {n}" for n in s.notes),
            "",
        ]
    return "\n".join(out)
