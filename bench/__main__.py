"""Run the benchmarks: ``bench/run [--quick] [--only 1,3] [--out DIR]`` (as root).

Writes DIR/results.json (every sample) and DIR/results.md (the table for bench/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import ROOT, CpuMeter, Section, loadavg
from .config import DEFAULT, QUICK, Config
from .loadwatch import LoadWatch

BENCHMARKS: dict[str, tuple[str, str]] = {
    # number: (module, what)
    "1": ("b1_throughput", "non-fax throughput through Postfix"),
    "2": ("b2_latency", "fax-path latency vs bare gs + dkim.verify"),
    "3": ("b3_memory", "milter peak RSS with 10 concurrent 20 MB faxes"),
    "4": ("b4_concurrency", "20 concurrent senders of 5-page faxes"),
    "5": ("b5_legibility", "line time and OCR legibility vs the seed's gs command"),
    "6": ("b6_inbound", "inbound TIFF -> PDF: img2pdf vs ImageMagick"),
    "7": ("b7_queue", "the outbound queue: N faxes over C channels vs the line's limit"),
    "8": ("b8_office", "Office files: DOCX conversion per page, non-fax mail meanwhile"),
    "9": ("b9_store", "the job store: admissions per second, PostgreSQL vs SQLite"),
    "10": ("b10_hosts", "several hosts: N queued faxes over 2 Asterisk hosts x 2 channels"),
}


def _runner(number: str) -> Callable[[Config], Section]:
    import importlib

    module = importlib.import_module(f"bench.{BENCHMARKS[number][0]}")
    run: Callable[[Config], Section] = module.run
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench/run",
        description="faxmail benchmarks; every figure is a ratio to a baseline of the same run",
        epilog="\n".join(f"{k}: {what}" for k, (_, what) in BENCHMARKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, 1-2 rounds (~2 min)")
    ap.add_argument("--only", default="", help="comma-separated benchmark numbers, e.g. 1,3")
    ap.add_argument("--skip", default="", help="comma-separated benchmark numbers to leave out")
    ap.add_argument(
        "--out",
        type=Path,
        help="output dir (default bench/results; bench/results/quick or /partial for those runs)",
    )
    ap.add_argument(
        "--hosts-faxes",
        type=int,
        help="benchmark 10: how many queued faxes to dispatch (default 100, --quick 8)",
    )
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else DEFAULT
    if args.hosts_faxes is not None:
        cfg = dataclasses.replace(cfg, hosts_faxes=args.hosts_faxes)
    # a quick or partial run must not overwrite the full run the README's table comes from
    sub = "quick" if args.quick else ("partial" if args.only or args.skip else "")
    out: Path = args.out or ROOT / "bench" / "results" / sub
    chosen = [k for k in BENCHMARKS if not args.only or k in args.only.split(",")]
    chosen = [k for k in chosen if k not in args.skip.split(",")]
    if not chosen:
        ap.error("no benchmark selected")

    from . import report  # after argument parsing: --help needs no subprocesses

    info: dict[str, Any] = {
        "command": shlex.join(["bench/run", *(sys.argv[1:] if argv is None else argv)]),
        "config": cfg.__dict__,
        "machine": report.machine(),
        "versions": report.versions(),
        "load_before": loadavg(),
        "busiest_processes_before": report.other_load(),
    }
    started = time.perf_counter()
    whole = CpuMeter()
    whole.start()
    watch = LoadWatch()
    watch.start()
    sections: list[Section] = []
    failed: list[str] = []
    for number in chosen:
        print(f"[bench] {number}: {BENCHMARKS[number][1]} ...", file=sys.stderr, flush=True)
        t0, load0, mark = time.perf_counter(), loadavg(), time.monotonic()
        meter = CpuMeter()
        meter.start()
        try:
            section = _runner(number)(cfg)
        except Exception:  # noqa: BLE001 - one broken benchmark must not lose the others
            traceback.print_exc()
            failed.append(number)
            continue
        section.seconds, section.load_before, section.load_after = (
            time.perf_counter() - t0,
            load0,
            loadavg(),
        )
        section.cpu_busy, section.cpu_steal = meter.stop(), meter.steal
        section.foreign_cpu = watch.window(mark)
        sections.append(section)
        print(f"[bench] {number}: done in {section.seconds:.0f} s", file=sys.stderr, flush=True)
    info["seconds"] = time.perf_counter() - started
    info["load_after"] = loadavg()
    info["cpu_busy"], info["cpu_steal"] = whole.stop(), whole.steal
    watch.stop()
    info["foreign_cpu"] = watch.window(0.0)
    info["busiest_processes_after"] = report.other_load()
    info["failed"] = failed
    out.mkdir(parents=True, exist_ok=True)
    data = {**info, "sections": [s.summary() for s in sections]}
    (out / "results.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    table = report.markdown(info, sections)
    (out / "results.md").write_text(table + "\n")
    print(table)
    print(f"[bench] wrote {out}/results.json and results.md", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
