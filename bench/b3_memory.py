"""3. Peak memory of the milter with 10 concurrent 20 MB fax mails.

Each round starts a fresh faxmail-milter (VmHWM only grows), notes its resident size at rest
(the baseline), sends one 20 MB fax alone, then ten at once, and reads VmHWM from
/proc/<pid>/status after each step. The pass-through milter under the same ten mails shows
what a pymilter milter that keeps nothing costs. The attachment is a 2-page scan padded with
an unused incompressible stream to ~14.6 MB (20 MB once base64-encoded): all ten reach the
end of message together instead of queueing for Ghostscript.
"""

from __future__ import annotations

import concurrent.futures

from infra.milterproc import MilterProcess
from infra.postfix import PostfixInstance

from . import memprofile
from .common import Row, Section, peak_rss_kib, ratio_row, rss_kib
from .config import Config
from .documents import padded_pdf
from .lab import Lab
from .mails import AUTHOR, FAX, fax_mail

MIB = 1024


def _send_all(pf: PostfixInstance, mails: list[bytes]) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(len(mails)) as pool:
        results = list(pool.map(lambda m: pf.send(AUTHOR, [FAX], m, timeout=600), mails))
    return [r.data.code if r.data else (r.rcpts.get(FAX) or r.mail).code for r in results]


def _postfix(lab: Lab, milter: MilterProcess) -> PostfixInstance:
    # room for 20 MB mails; mail a milter lets through is discarded, not stored
    return lab.postfix(
        milter,
        message_size_limit=60_000_000,
        extra_main_cf={"transport_maps": "inline:{ example.jp=discard:, bench.example=discard: }"},
    )


def run(cfg: Config) -> Section:
    section = Section("memory", f"3. Milter peak RSS, {cfg.memory_mails} concurrent 20 MB faxes")
    idle: list[float] = []
    single: list[float] = []
    peak: list[float] = []
    passthrough: list[float] = []
    codes: list[int] = []
    with Lab("memory") as lab:
        pdf = padded_pdf(int(cfg.memory_mail_bytes / 1.37))
        sample = fax_mail(lab.signer, pdf)
        for r in range(cfg.memory_rounds):
            mails = [fax_mail(lab.signer, pdf) for _ in range(cfg.memory_mails + 1)]
            milter = lab.faxmail()
            pf = _postfix(lab, milter)
            assert milter.pid is not None
            idle.append(rss_kib(milter.pid) / MIB)
            codes += _send_all(pf, mails[:1])
            single.append(peak_rss_kib(milter.pid) / MIB)
            codes += _send_all(pf, mails[1:])
            peak.append(peak_rss_kib(milter.pid) / MIB)
            milter.stop()
            pf.stop()
            if r == 0 or not cfg.quick:
                pm = lab.passmilter()
                ppf = _postfix(lab, pm)
                _send_all(ppf, mails[1:])
                assert pm.pid is not None
                passthrough.append(peak_rss_kib(pm.pid) / MIB)
                pm.stop()
                ppf.stop()
        steps, traced = memprofile.profile(sample, lab)
    base = section.add(Row("faxmail at rest (VmRSS after start)", "MiB", idle))
    section.add(Row("faxmail VmHWM after 1 mail", "MiB", single))
    top = section.add(Row(f"faxmail VmHWM after {cfg.memory_mails} concurrent", "MiB", peak))
    top.goal, top.met = "≤ 150 MiB", bool(peak) and top.median <= 150
    section.add(ratio_row("peak / at rest", top, base))
    growth = Row("", "", [p - i for p, i in zip(peak, idle, strict=True)])
    growth_one = Row("", "", [s - i for s, i in zip(single, idle, strict=True)])
    section.add(ratio_row("(peak − rest) / (1 mail − rest)", growth, growth_one))
    if passthrough:
        pm_row = section.add(Row("pass-through milter VmHWM, same load", "MiB", passthrough))
        # --quick measures the pass-through once: compare every round with it
        pm_each = Row("", "", pm_row.samples * (len(peak) // len(passthrough)))
        section.add(ratio_row("faxmail peak / pass-through peak", top, pm_each))
    replies: dict[int, int] = {}
    for c in codes:
        replies[c] = replies.get(c, 0) + 1
    section.notes += [
        f"mail size {len(sample) / 1e6:.1f} MB (PDF {len(pdf) / 1e6:.1f} MB, base64); "
        f"{cfg.memory_rounds} rounds, a fresh milter each; replies: "
        + ", ".join(f"{n}× {c}" for c, n in sorted(replies.items())),
    ]
    section.extra["replies"] = replies
    if not top.met:
        section.notes.append(
            "Where it goes, from bench/memprofile.py (tracemalloc around each step of "
            f"Gateway.decide for one such mail, Python heap; peak {traced:.0f} MiB):"
        )
        section.notes += [f"  - {step}" for step in steps]
    return section
