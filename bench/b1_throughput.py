"""1. Non-fax mail throughput through Postfix: no milter, pass-through, faxmail, dkimpy-milter.

smtp-source sends N one-message connections (8 in parallel) of a 2 KB DKIM-signed mail to a
non-fax address. Every variant has its own Postfix instance and milter process, started once,
so switching variants needs no reload; before each run every queue is drained, so no variant
pays for the previous one's deliveries.
"""

from __future__ import annotations

import email
import os
import subprocess
import time
from pathlib import Path

from infra.milterproc import MilterProcess
from infra.net import free_port
from infra.postfix import PostfixInstance

from .common import CpuMeter, Row, Section, interleaved, ratio_row
from .config import Config
from .lab import BENCH_DOMAIN, Lab
from .mails import AUTHOR, plain_mail

SMTP_SOURCE = "/usr/sbin/smtp-source"
NAMES = {
    "a": "no milter",
    "b": "pass-through",
    "c": "faxmail",
    "d": "dkimpy-milter",
    "e": "what-if: ACCEPT at DATA, nothing else",
    "f": "what-if: same, connect/MAIL/RCPT no-reply",
}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _smtp_source(pf: PostfixInstance, message: Path, count: int, sessions: int) -> float:
    """Seconds for ``count`` one-message connections."""
    argv = [
        SMTP_SOURCE,
        "-m",
        str(count),
        "-s",
        str(sessions),
        "-M",
        "client.faxmail.test",
        "-f",
        AUTHOR,
        "-t",
        f"user@{BENCH_DOMAIN}",
        "-F",
        str(message),
        f"{pf.host}:{pf.port}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        # without -A, smtp-source stops at the first unexpected reply
        raise RuntimeError(f"smtp-source failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def _check_dkimpy(lab: Lab, pf: PostfixInstance, message: bytes) -> str:
    """Proof that dkimpy-milter really verifies: its Authentication-Results on a delivered copy."""
    result = pf.send(AUTHOR, ["check@example.jp"], message)
    if result.data is None or result.data.code != 250:
        return f"check mail refused: {result}"
    (copy,) = pf.wait_for_delivery("check@example.jp")
    header = email.message_from_bytes(copy).get("Authentication-Results")
    return " ".join(str(header).split()) if header else "no Authentication-Results header"


def run(cfg: Config) -> Section:
    section = Section("throughput", "1. Non-fax mail throughput (smtp-source)")
    with Lab("throughput") as lab:
        message = plain_mail(lab.signer)
        # smtp-source -F appends CRLF to each line itself
        msg_file = lab.dir / "plain.eml"
        msg_file.write_bytes(message.replace(b"\r\n", b"\n"))
        msg_file.chmod(0o644)
        instances: dict[str, PostfixInstance] = {"a": lab.postfix()}
        milters: dict[str, MilterProcess] = {}
        for sock in ("unix", "tcp"):
            for kind, start in (
                ("b", lab.passmilter),
                ("c", lab.faxmail),
                ("d", lab.dkimpy_milter),
            ):
                spec = f"inet:{free_port()}@127.0.0.1" if sock == "tcp" else None
                milter = start(spec)
                milters[f"{kind}-{sock}"] = milter
                instances[f"{kind}-{sock}"] = lab.postfix(milter)
        # the floor for any milter that answers ACCEPT at DATA (unix socket only: no-reply
        # stages stall on TCP)
        for kind, noreply in (("e", False), ("f", True)):
            milters[f"{kind}-unix"] = lab.floor_milter(noreply=noreply)
            instances[f"{kind}-unix"] = lab.postfix(milters[f"{kind}-unix"])
        section.notes.append(
            "dkimpy-milter check mail: " + _check_dkimpy(lab, instances["d-unix"], message)
        )
        variants = list(instances)
        # warm-up: spawn smtpd processes, import paths, page cache
        for v in variants:
            _smtp_source(instances[v], msg_file, max(50, cfg.messages // 10), cfg.sessions)
        rates: dict[str, list[float]] = {v: [] for v in variants}
        busy: dict[str, list[float]] = {v: [] for v in variants}
        milter_cpu: dict[str, list[float]] = {v: [] for v in milters}

        def one(variant: str, _round: int) -> None:
            for pf in instances.values():
                pf.wait_for_empty_queue(timeout=120)
            meter = CpuMeter()
            pid = milters[variant].pid if variant in milters else None
            cpu0 = _cpu_seconds(pid) if pid else 0.0
            meter.start()
            seconds = _smtp_source(instances[variant], msg_file, cfg.messages, cfg.sessions)
            busy[variant].append(meter.stop())
            rates[variant].append(cfg.messages / seconds)
            if pid:
                milter_cpu[variant].append((_cpu_seconds(pid) - cpu0) / cfg.messages * 1000)

        interleaved(cfg.throughput_rounds, variants, one)
        for v in variants:
            if v in milters and not milters[v].running():
                raise RuntimeError(f"milter {v} died:\n{milters[v].log()[-3000:]}")

    base = section.add(Row("a: no milter", "msg/s", rates["a"]))
    for sock in ("unix", "tcp"):
        rows = {
            k: section.add(Row(f"{k}: {NAMES[k]}, {sock} socket", "msg/s", rates[f"{k}-{sock}"]))
            for k in "bcd"
        }
        goal = 0.85 if sock == "unix" else None
        section.add(ratio_row(f"c/a, {sock}", rows["c"], base, at_least=goal))
        section.add(ratio_row(f"c/b, {sock}", rows["c"], rows["b"]))
        section.add(ratio_row(f"c/d, {sock}", rows["c"], rows["d"]))
        section.add(ratio_row(f"b/a, {sock}", rows["b"], base))
        section.add(ratio_row(f"d/a, {sock}", rows["d"], base))
    floor = {}
    for k in "ef":
        floor[k] = section.add(Row(f"{k}: {NAMES[k]}, unix socket", "msg/s", rates[f"{k}-unix"]))
        section.add(ratio_row(f"{k}/a, unix", floor[k], base))
    faxmail_unix = section.row("c: faxmail, unix socket")
    # noise only ever costs throughput: the best round of each is the least disturbed estimate
    for label, num, den in (
        ("c/a, unix, best rounds", faxmail_unix, base),
        ("c/a, tcp, best rounds", section.row("c: faxmail, tcp socket"), base),
        ("b/a, unix, best rounds", section.row("b: pass-through, unix socket"), base),
    ):
        section.add(Row(label, "×", [max(num.samples) / max(den.samples)]))
    section.add(ratio_row("c/e, unix (faxmail vs the floor)", faxmail_unix, floor["e"]))
    section.add(ratio_row("f/e, unix (what no-reply would gain)", floor["f"], floor["e"]))
    for v, values in milter_cpu.items():
        k, sock = v.split("-")
        section.add(Row(f"milter CPU per message, {k}: {NAMES[k]}, {sock}", "ms", values))
    section.extra["cpu_busy"] = {v: busy[v] for v in busy}
    section.notes.append(
        f"{cfg.messages} one-message connections per run, {cfg.sessions} in parallel, "
        f"{cfg.throughput_rounds} rounds; a 2 KB DKIM-signed mail to a non-fax address, "
        "discarded by Postfix after queueing."
    )
    return section
