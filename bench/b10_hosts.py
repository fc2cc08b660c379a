"""10. Several hosts: the dispatch of N queued faxes over 2 Asterisk hosts × 2 channels.

The stack of tests/test_e2e_multi.py (tests/infra/amigateway.py with ``mx=2``): two
faxmail-milter processes, each with its dispatcher, behind two private Postfix instances, one
private PostgreSQL (fsync on) as the job store, two Asterisk 22 instances dialled through AMI,
each with a policy line of 2 channels to its own far end (the 2-channel trunk of
tests/e2e/e2e-remote.conf, which logs every call).

The faxes are queued first and only then dispatched, so that the dispatch is what is measured,
not the rendering: N single-page faxes to N numbers (a number each: the one-call-per-number
rule does not bind) are mailed at once, half through each MX, under a policy whose quiet hours
hold every call; once every job is queued, both milters get the policy without quiet hours
(rewritten, then SIGHUP). Measured: the time from that moment to the last result mail, against
the physical limit measured in the same run, as benchmark 7 does: the sum of the answered
calls' own durations (answer to hang-up, from both far ends' lines in Asterisk's logs) divided
by the 4 channels. Also busy/congested attempts, the most calls on each host's line at once,
calls per Asterisk host and per dispatcher, and the faxes sent.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from faxmail.store.model import JobFilter, JobState
from faxmail.store.postgres import PostgresStore
from infra.amigateway import HOSTS, TwoHostGateway, build_two_host_gateway
from infra.farend import TRUNK, TRUNK_CHANNELS, FarEndWatch, LineRecord, trunk_number
from infra.faxbatch import mail_through, wait_for_results
from infra.gateway import asterisk_host_user
from infra.postgres import start_postgres
from infra.queuepolicies import host_lines, queue_policy
from infra.storekinds import migrated_database

from .common import Row, Section, ratio_row
from .config import Config
from .lab import Lab

CHANNELS = TRUNK_CHANNELS  # per Asterisk host: its line's channels, as many as its far end's
#: Seconds a single-page call may take on a loaded machine (about 15 s when idle).
CALL_BUDGET = 45
SENDER = "bench10@example.jp"
BATCH = 8  # fax mails at once while queueing (4 per MX): within the milters' render queues
_DIALLING = re.compile(r"dialling job=\S+ call=\d+ line=\S+")

POLICY = queue_policy(host_lines(CHANNELS))


def _holding(policy: str, now: datetime) -> str:
    """The policy with quiet hours around `now` for every number: the jobs queue, no call."""
    start, end = (now - timedelta(hours=1)), (now + timedelta(hours=3))
    window = f'{{from: "{start:%H:%M}", to: "{end:%H:%M}", timezone: UTC}}'
    return policy + f"quiet_hours:\n  - {window}\n"


def _queued(url: str) -> int:
    store = PostgresStore(url)
    try:
        return len(store.queries.jobs(JobFilter(states=(JobState.QUEUED,))))
    finally:
        store.close()


def _release(gateway: TwoHostGateway) -> float:
    """Both milters' policy without quiet hours, now; when that was."""
    at = time.time()
    for milter in gateway.milters:
        Path(milter.settings["policy"]).write_text(POLICY)
        assert milter.pid is not None
        os.kill(milter.pid, signal.SIGHUP)
    return at


def _lines(watches: dict[str, FarEndWatch], timeout: float = 120) -> dict[str, LineRecord]:
    """Each host's far-end line once every answered call on it has hung up."""
    deadline = time.monotonic() + timeout
    while True:
        lines = {host: watch.read().line(TRUNK) for host, watch in watches.items()}
        if all(line.unfinished == 0 for line in lines.values()) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def run(cfg: Config) -> Section:
    n = cfg.hosts_faxes
    channels = CHANNELS * len(HOSTS)
    section = Section(
        "hosts", f"10. Several hosts: {n} queued faxes over 2 Asterisk hosts × {CHANNELS} channels"
    )
    with Lab("hosts") as lab:
        server = start_postgres(fsync=True)
        lab.on_close(server.close)
        url = migrated_database(server)
        gateway = build_two_host_gateway(
            lab.subdir("gateway"),
            _holding(POLICY, datetime.now(UTC)),
            owner=asterisk_host_user(),
            start_milter=lambda settings: lab.faxmail(settings=dict(settings)),
            make_postfix=lab.postfix,
            start_asterisk=lab.asterisk,
            mx=2,
            store_url=url,
        )
        watches = {host: FarEndWatch(gateway.asterisks[host]) for host in HOSTS}
        numbers = [trunk_number(k) for k in range(1, n + 1)]
        mailed = time.time()
        accepted = [
            a  # a few at a time: a hundred at once would meet "451 4.3.2 renderer busy"
            for k in range(0, n, BATCH)
            for a in mail_through(gateway.postfixes, lab.signer, numbers[k : k + BATCH], SENDER)
        ]
        if not all(a.ok for a in accepted):
            raise RuntimeError(f"not every fax mail was accepted: {accepted}")
        queueing = time.time() - mailed
        if (queued := _queued(url)) != n:
            raise RuntimeError(f"{queued} of {n} jobs queued before the dispatch")
        released = _release(gateway)
        results, last = wait_for_results(
            gateway.postfix, SENDER, n, 120 + CALL_BUDGET * n / channels
        )
        lines = _lines(watches)
        by_mx = [len(_DIALLING.findall(milter.log())) for milter in gateway.milters]

    durations = [d for line in lines.values() for d in line.durations()]
    elapsed = section.add(Row("queue released → last result mail", "s", [last - released]))
    limit = section.add(
        Row(f"physical limit, Σ call durations / {channels}", "s", [sum(durations) / channels])
    )
    ratio = section.add(ratio_row("elapsed / physical limit", elapsed, limit))
    sent = sum(1 for r in results if r.sent)
    if sent < n:  # fewer calls make a shorter limit: the ratio proves nothing then
        ratio.note = "not every fax was sent"
    section.add(Row("faxes sent", f"of {n}", [sent], f"= {n}", sent == n))
    once = collections.Counter(r.job for r in results)
    section.add(
        Row(
            "result mails per job, most",
            "",
            [max(once.values())],
            "1",
            once.most_common(1)[0][1] == 1,
        )
    )
    refused = sum(line.refused for line in lines.values())
    section.add(Row("busy/congested attempts", "", [refused], "0", refused == 0))
    for host, line in lines.items():
        section.add(
            Row(
                f"{host}: most calls on its line at once",
                "",
                [line.max_calls],
                f"≤ {CHANNELS}",
                line.max_calls <= CHANNELS,
            )
        )
        section.add(Row(f"{host}: calls answered", "", [len(line.answered)]))
    for k, count in enumerate(by_mx, start=1):
        section.add(Row(f"calls placed by mx{k}'s dispatcher", "", [count]))
    section.add(
        Row("mean call duration (answer → hang-up)", "s", [statistics.mean(durations or [0.0])])
    )
    section.add(Row(f"mailing and queueing the {n} faxes (not in the ratio)", "s", [queueing]))
    section.notes += [
        f"{n} single-page faxes (an order of three lines, about 15 s on the line on an idle "
        f"machine) to {n} numbers behind each far end's 2-channel trunk, one round: queued "
        "under quiet hours first, then released on both MX hosts at once (policy rewritten, "
        "SIGHUP).",
        "notify on each Asterisk host has a state directory of its own (no shared files), so "
        "it cannot poke a dispatcher's wake socket: a call's end reaches both dispatchers as a "
        "PostgreSQL NOTIFY from the transaction that records it (their LISTEN connections).",
        "Durations, busy/congestion and calls at once are the far ends' own NOTICE lines in "
        "Asterisk's logs (tests/infra/farend.py); calls per dispatcher from the milters' "
        "'dialling' log lines.",
    ]
    return section
