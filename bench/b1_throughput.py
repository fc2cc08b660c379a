"""1. Non-fax mail throughput through Postfix: no milter, pass-through, faxmail, dkimpy-milter.

smtp-source sends N one-message connections (8 in parallel) of a 2 KB DKIM-signed mail to a
non-fax address. Every variant has its own Postfix instance and milter process, started once,
so switching variants needs no reload; before each run every queue is drained, so no variant
pays for the previous one's deliveries.

What-if variants (unix socket): the floor milter of ``floor_milter.py`` under five protocol
negotiations (e-i), the leanest of them with Postfix's macro lists trimmed in main.cf (k),
and faxmail with ``smtpd_milter_maps`` switching the milter off for the benchmark's client
(m: a deployment option, not the milter's figure). A check mail through each floor variant
(one plain, one SASL-authenticated) proves which macros arrive at MAIL FROM.
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
    "g": "what-if: same, no connect stage, {client_addr} at MAIL",
    "h": "what-if: g + MAIL no-reply",
    "i": "what-if: h + no Python abort callback",
    "k": "what-if: i + Postfix macro lists trimmed",
    "m": "faxmail, smtpd_milter_maps: milter off for this client",
}
#: floor_milter.py variant behind each what-if
FLOOR = {
    "e": "naive",
    "f": "noreply",
    "g": "lean",
    "h": "lean-nr",
    "i": "lean-nr-noabort",
    "k": "lean-nr-noabort",
}
#: main.cf for k: no macros but those faxmail reads ({auth_authen} and {client_addr} at MAIL
#: come from the milter's own list, set at negotiation; "i" at end of message)
TRIMMED_MACROS = {
    "milter_connect_macros": "",
    "milter_helo_macros": "",
    "milter_rcpt_macros": "",
    "milter_data_macros": "",
    "milter_unknown_command_macros": "",
    "milter_end_of_header_macros": "",
    "milter_end_of_data_macros": "i",
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


def _check_macros(pf: PostfixInstance, milter: MilterProcess, message: bytes) -> str:
    """What a floor milter saw at MAIL FROM for one plain and one SASL-authenticated mail."""
    for sasl in (None, ("alice", "secret")):
        result = pf.send(AUTHOR, [f"user@{BENCH_DOMAIN}"], message, sasl=sasl)
        if result.data is None or result.data.code != 250:
            return f"check mail refused: {result}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen = [line for line in milter.log().splitlines() if line.startswith("macros ")]
        if len(seen) >= 2:
            return "; ".join(line.split(" ", 2)[2] for line in seen[:2])
        time.sleep(0.1)
    return "no macros line from the floor milter"


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
        # the floor for any milter that answers ACCEPT at DATA, under several negotiations
        # (unix socket only: no-reply stages stall on TCP)
        for kind, variant in FLOOR.items():
            milters[f"{kind}-unix"] = lab.floor_milter(variant=variant)
            extra = TRIMMED_MACROS if kind == "k" else {}
            instances[f"{kind}-unix"] = lab.postfix(milters[f"{kind}-unix"], extra_main_cf=extra)
        # deployment option: Postfix does not involve the milter for this client at all
        milters["m-unix"] = lab.faxmail()
        instances["m-unix"] = lab.postfix(
            milters["m-unix"], extra_main_cf={"smtpd_milter_maps": "inline:{ 127.0.0.1=DISABLE }"}
        )
        section.notes.append(
            "dkimpy-milter check mail: " + _check_dkimpy(lab, instances["d-unix"], message)
        )
        section.extra["macros_at_mail"] = {
            k: _check_macros(instances[f"{k}-unix"], milters[f"{k}-unix"], message) for k in FLOOR
        }
        for k in "gh":
            section.notes.append(f"{k}: macros at MAIL FROM: " + section.extra["macros_at_mail"][k])
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
    for k in FLOOR:
        floor[k] = section.add(Row(f"{k}: {NAMES[k]}, unix socket", "msg/s", rates[f"{k}-unix"]))
        section.add(ratio_row(f"{k}/a, unix", floor[k], base))
    maps = section.add(Row(f"m: {NAMES['m']}, unix socket", "msg/s", rates["m-unix"]))
    section.add(ratio_row("m/a, unix (deployment option)", maps, base))
    faxmail_unix = section.row("c: faxmail, unix socket")
    # noise only ever costs throughput: the best round of each is the least disturbed estimate
    for label, num, den in (
        ("c/a, unix, best rounds", faxmail_unix, base),
        ("c/a, tcp, best rounds", section.row("c: faxmail, tcp socket"), base),
        ("b/a, unix, best rounds", section.row("b: pass-through, unix socket"), base),
        ("e/a, unix, best rounds", floor["e"], base),
        ("h/a, unix, best rounds", floor["h"], base),
        ("i/a, unix, best rounds", floor["i"], base),
    ):
        section.add(Row(label, "×", [max(num.samples) / max(den.samples)]))
    section.add(ratio_row("c/e, unix (faxmail vs the floor)", faxmail_unix, floor["e"]))
    for k in "fghik":
        section.add(ratio_row(f"{k}/e, unix (gain over the naive floor)", floor[k], floor["e"]))
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
