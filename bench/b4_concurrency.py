"""4. Concurrency: 20 senders at once, each sending 5-page faxes one after another.

Baseline, interleaved round by round: the bare gs command rendering the same number of the
same 5-page PDF with as many parallel workers as the milter has render slots (one per core)
— the most any renderer could do on this machine. Also recorded: every reply (4xx count), the
end-of-DATA → reply latency of each fax (queueing shows up there), and the machine's CPU busy
fraction while the senders ran (both cores saturated or not).
"""

from __future__ import annotations

import concurrent.futures
import statistics
import time

from .b2_latency import bare_gs
from .common import CpuMeter, Row, Section, cpu_count, interleaved, ratio_row
from .config import Config
from .documents import text_pdf
from .lab import Lab
from .mails import AUTHOR, FAX, Timed, fax_mail, send_timed


def run(cfg: Config) -> Section:
    section = Section("concurrency", f"4. {cfg.senders} concurrent senders of 5-page faxes")
    pdf = text_pdf(5)
    total = cfg.senders * cfg.faxes_per_sender
    workers = cpu_count()
    rate: dict[str, list[float]] = {"milter": [], "gs": []}
    busy: dict[str, list[float]] = {"milter": [], "gs": []}
    replies: list[Timed] = []
    with Lab("concurrency") as lab:
        milter = lab.faxmail()
        pf = lab.postfix(milter)
        path = lab.dir / "five.pdf"
        path.write_bytes(pdf)
        send_timed(pf.host, pf.port, AUTHOR, FAX, fax_mail(lab.signer, pdf))  # warm-up

        def sender(mails: list[bytes]) -> list[Timed]:
            return [send_timed(pf.host, pf.port, AUTHOR, FAX, m) for m in mails]

        def one(variant: str, _round: int) -> None:
            meter = CpuMeter()
            if variant == "milter":
                batches = [
                    [fax_mail(lab.signer, pdf) for _ in range(cfg.faxes_per_sender)]
                    for _ in range(cfg.senders)
                ]
                meter.start()
                t0 = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(cfg.senders) as pool:
                    results = [t for batch in pool.map(sender, batches) for t in batch]
                elapsed = time.perf_counter() - t0
                replies.extend(results)
                done = sum(1 for t in results if t.code == 250)
            else:
                outs = [lab.dir / f"gs-{n % workers}.tif" for n in range(total)]
                meter.start()
                t0 = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                    list(pool.map(lambda out: bare_gs(path, out), outs))
                elapsed = time.perf_counter() - t0
                done = total
            busy[variant].append(meter.stop())
            rate[variant].append(done / elapsed * 60)

        interleaved(cfg.concurrency_rounds, ["milter", "gs"], one)

    m = section.add(Row("faxmail via Postfix, 20 senders", "faxes/min", rate["milter"]))
    g = section.add(Row(f"bare gs, {workers} in parallel", "faxes/min", rate["gs"]))
    section.add(ratio_row("faxmail / bare gs", m, g))
    section.add(
        Row("CPU busy (whole machine), faxmail run", "%", [100 * b for b in busy["milter"]])
    )
    section.add(Row("CPU busy (whole machine), bare gs run", "%", [100 * b for b in busy["gs"]]))
    codes: dict[int, int] = {}
    for t in replies:
        codes[t.code] = codes.get(t.code, 0) + 1
    temp = sum(n for c, n in codes.items() if 400 <= c < 500)
    section.add(Row("4xx replies", "", [float(temp)], goal="0", met=temp == 0))
    latencies = sorted(t.seconds for t in replies if t.code == 250)
    if latencies:
        p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        section.add(Row("latency per fax, median", "s", [statistics.median(latencies)]))
        section.add(Row("latency per fax, 95th percentile", "s", [p95]))
        section.add(Row("latency per fax, max", "s", [latencies[-1]]))
    section.notes += [
        f"{cfg.senders} threads × {cfg.faxes_per_sender} faxes each ({total} per round), "
        f"{cfg.concurrency_rounds} rounds; render slots = {workers} (one per core, the "
        "default); replies: " + ", ".join(f"{n}× {c}" for c, n in sorted(codes.items())),
        "bare gs renders the same PDF the same number of times with "
        f"{workers} workers and no mail, DKIM, checks or queueing.",
    ]
    section.extra["replies"] = codes
    section.extra["latencies"] = latencies
    return section
