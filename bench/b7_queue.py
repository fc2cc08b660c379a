"""7. The outbound queue: N faxes mailed at once over C channels, against the line's limit.

The whole gateway on this machine (tests/infra/gateway.py: Postfix, faxmail-milter, Asterisk
22 with the shipped dialplan, faxmail-notify) and the far end of tests/e2e/e2e-remote.conf,
whose lines answer a call beyond their channels with busy or congestion, as the phone network
does. Two variants, interleaved round by round, on one gateway whose policy has two lines:

- C = 1: N faxes to one fax machine on one analog line (03-5555-0009), over the policy's
  line "office" of 1 channel;
- C = 2: N faxes to N numbers behind the far end's 2-channel trunk (03-5555-1XXX), over the
  line "trunk" of 2 channels.

Measured: the time from the first ``250`` to the last result mail, against the physical limit
measured in the same run: the sum of the answered calls' own durations (answer to hang-up, as
the far end logged them in Asterisk's log) divided by C — how long the calls take if every
channel carries a fax at every moment. The ratio is ≥ 1 for any queue that respects the
channels; the rest is the gaps between calls (notify hearing the end, the next call's set-up)
and retries after busy. Also from the far end: busy/congested attempts and the most calls on
the line at once; and from the result mails, how many faxes were sent.
"""

from __future__ import annotations

import statistics

from infra.farend import TRUNK, FarEndWatch, dialled, one_line_number, trunk_number
from infra.faxbatch import mail_at_once, wait_for_results
from infra.gateway import Gateway, asterisk_host_user, build_gateway
from infra.queuepolicies import line, queue_policy

from .common import Row, Section, interleaved, ratio_row
from .config import Config
from .lab import Lab

#: One gateway for both variants: numbers 03-5555-000X go out on "office", the rest on "trunk".
POLICY = queue_policy(
    line("office", 1, prefixes='["+8135555000"]') + line("trunk", 2),
    max_retries=2,
    retry="  busy_retry_s: 5\n",
)

ONE_LINE = one_line_number(9)
#: Seconds a single-page call may take on a loaded machine (about 15 s when idle).
CALL_BUDGET = 45


class _Figures:
    """Per-round samples of one variant."""

    def __init__(self) -> None:
        self.elapsed: list[float] = []
        self.limit: list[float] = []
        self.sent: list[float] = []
        self.refused: list[float] = []
        self.max_calls: list[float] = []
        self.call_seconds: list[float] = []


def _gateway(lab: Lab) -> Gateway:
    gateway = build_gateway(
        lab.subdir("gateway"),
        POLICY,
        owner=asterisk_host_user(),
        start_milter=lambda settings: lab.faxmail(settings=dict(settings)),
        make_postfix=lab.postfix,
        start_asterisk=lab.asterisk,
    )
    lab.on_close(gateway.close)
    return gateway


def run(cfg: Config) -> Section:
    n = cfg.queue_faxes
    section = Section("queue", f"7. The outbound queue: {n} faxes at once over 1 and 2 channels")
    numbers = {1: [ONE_LINE] * n, 2: [trunk_number(k) for k in range(1, n + 1)]}
    far_line = {1: dialled(ONE_LINE), 2: TRUNK}
    figures = {c: _Figures() for c in numbers}
    with Lab("queue") as lab:
        gateway = _gateway(lab)

        def one(variant: str, round_: int) -> None:
            channels = int(variant)
            gateway.wait_until_idle(timeout=300)
            sender = f"bench7-c{channels}-r{round_}@example.jp"  # a mailbox per run
            watch = FarEndWatch(gateway.asterisk)
            accepted = mail_at_once(gateway.postfix, lab.signer, numbers[channels], sender)
            if not all(a.ok for a in accepted):
                raise RuntimeError(f"not every fax mail was accepted: {accepted}")
            timeout = 120 + CALL_BUDGET * n
            results, last = wait_for_results(gateway.postfix, sender, n, timeout)
            gateway.wait_until_idle(timeout=300)  # every call ended: all of them in the log
            line = watch.read().line(far_line[channels])
            f = figures[channels]
            f.elapsed.append(last - min(a.at for a in accepted))
            f.limit.append(sum(line.durations()) / channels)
            f.sent.append(sum(1 for r in results if r.sent))
            f.refused.append(line.refused)
            f.max_calls.append(line.max_calls)
            f.call_seconds.append(statistics.mean(line.durations() or [0.0]))

        interleaved(cfg.queue_rounds, ["1", "2"], one)

    for channels, f in figures.items():
        what = f"C = {channels}"
        elapsed = section.add(Row(f"{what}: first 250 → last result mail", "s", f.elapsed))
        limit = section.add(Row(f"{what}: physical limit, Σ call durations / C", "s", f.limit))
        ratio = section.add(
            ratio_row(f"{what}: elapsed / physical limit", elapsed, limit, at_most=1.1)
        )
        if min(f.sent) < n:  # fewer calls make a shorter limit: the ratio proves nothing then
            ratio.met, ratio.note = False, "not every fax was sent"
        section.add(Row(f"{what}: faxes sent", f"of {n}", f.sent, f"= {n}", min(f.sent) == n))
        section.add(
            Row(f"{what}: busy/congested attempts", "", f.refused, "0", max(f.refused) == 0)
        )
        section.add(
            Row(
                f"{what}: most calls on the line at once",
                "",
                f.max_calls,
                f"≤ {channels}",
                max(f.max_calls) <= channels,
            )
        )
        section.add(Row(f"{what}: mean call duration (answer → hang-up)", "s", f.call_seconds))
    section.notes += [
        f"{n} single-page faxes (an order of three lines: about 15 s on the line at 14 400 "
        "bit/s on an idle machine, longer when notify is slow to start SendFAX) per run, "
        f"{cfg.queue_rounds} rounds; C = 1: all to {ONE_LINE}, one fax "
        "machine on one line; C = 2: to as many numbers behind the far end's 2-channel trunk.",
        "Durations, busy/congestion and calls at once are the far end's own NOTICE lines in "
        "Asterisk's log (tests/infra/farend.py); the end of a call is its channel entering the "
        "h extension. Elapsed: wall clock from the first 250 reply to the last result mail "
        "seen in its Maildir (polled every 50 ms).",
    ]
    return section
