"""The far end of the test calls (tests/e2e/e2e-remote.conf, tests/infra/farend.py).

First its record read back from log text, without Asterisk (the lines are as Asterisk 22
writes them, copied from a run and shortened where nothing is read); then the far end itself
in a real Asterisk (marked e2e and asterisk, about 35 s).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from infra.asterisk import StartAsterisk
from infra.farend import (
    REMOTE_MODULES,
    TRUNK,
    FarEndWatch,
    dialled,
    fail_first_number,
    one_line_number,
    read_far_end,
    trunk_number,
)
from infra.faxbatch import order_pdf
from infra.gateway import REPO, asterisk_files
from infra.net import free_udp_port

A = "Local/0355551001@e2e-remote-00000000;2"
B = "Local/0355551002@e2e-remote-00000001;2"
C = "Local/0355551003@e2e-remote-00000002;2"


def arrival(at: str, channel: str, calls: int, result: str, line: str = "trunk2") -> str:
    number = channel.split("@")[0].removeprefix("Local/")
    fields = f"line={line} number={number} channel={channel} calls={calls} of=2 result={result}"
    return (
        # Asterisk echoes every dialplan step at verbose level 3: this one must not count.
        f"[2026-12-01 23:49:{at}] VERBOSE[2163][C-00000001] pbx.c: Executing [s@e2e-line:19] "
        f'Log("{channel}", "NOTICE,e2e-line {fields}") in new stack\n'
        f"[2026-12-01 23:49:{at}] NOTICE[2163][C-00000001] Ext. s: e2e-line {fields}\n"
    )


def on_hook(at: str, channel: str) -> str:
    return (
        f"[2026-12-01 23:49:{at}] VERBOSE[2163][C-00000001] pbx.c: Executing "
        f'[h@faxmail-receive:1] System("{channel}", "/usr/bin/python3 -m faxmail.notify.main '
        'received --call=1796168975.3") in new stack\n'
        f"[2026-12-01 23:49:{at}] VERBOSE[2163][C-00000001] pbx.c: Executing "
        f'[h@faxmail-receive:2] NoOp("{channel}", "faxmail: receive context done") in new stack\n'
    )


LOG = (
    arrival("10.000", A, 1, "answered")
    + arrival("10.500", B, 2, "answered")
    + arrival("11.000", C, 3, "congestion")
    + on_hook("25.250", A)
    + "[2026-12-01 23:49:30.000] NOTICE[2171][C-00000005] Ext. 0355552001: e2e-fail "
    "number=0355552001 channel=Local/0355552001@e2e-remote-00000004;2 result=dropped\n"
)


def test_a_line_counts_its_calls_refusals_and_durations() -> None:
    trunk = read_far_end(LOG).line("trunk2")
    assert [a.channel for a in trunk.arrivals] == [A, B, C]
    assert trunk.max_calls == 3  # the refused third call was on the line for a moment too
    assert trunk.refused == 1
    assert [a.number for a in trunk.answered] == ["0355551001", "0355551002"]
    assert trunk.durations() == [pytest.approx(15.25)]  # B has not hung up yet
    assert trunk.unfinished == 1


def test_fail_first_calls_and_a_line_never_called() -> None:
    far_end = read_far_end(LOG)
    assert [(c.number, c.result) for c in far_end.fail_first] == [("0355552001", "dropped")]
    quiet = far_end.line("0355550001")
    assert (quiet.max_calls, quiet.refused, quiet.durations()) == (0, 0, [])


def test_a_watch_counts_only_what_came_after_it() -> None:
    class Log:
        text = arrival("10.000", A, 1, "answered")

        def log(self) -> str:
            return self.text

    asterisk = Log()
    watch = FarEndWatch(asterisk)
    asterisk.text += arrival("40.000", B, 1, "answered")
    assert [a.channel for a in watch.read().line("trunk2").arrivals] == [B]


def test_the_number_plan() -> None:
    assert one_line_number(3) == "03-5555-0003"
    assert trunk_number(12) == "03-5555-1012"
    assert fail_first_number(1) == "03-5555-2001"
    assert dialled("03-5555-1012") == "0355551012"
    with pytest.raises(ValueError):
        one_line_number(10)


# ---------------------------------------------------------------- the far end in Asterisk

#: faxmail-notify's stand-in: records its arguments; "received" lingers in the far end's h
#: extension, as the real one does while it converts and mails the fax.
STUB_NOTIFY = """\
#!/bin/sh
echo "$*" >> "$(dirname "$0")/notify.args"
[ "$3" = received ] && sleep 3
exit 0
"""


def _call_file(number: str, tiff: Path, job: str) -> str:
    return (
        f"Channel: Local/{dialled(number)}@e2e-remote\nContext: faxmail-send\nExtension: send\n"
        f"Priority: 1\nMaxRetries: 0\nSetvar: FAXFILE={tiff}\nSetvar: FAXMAIL_JOB={job}\n"
    )


def _answered_call_ended(number: str) -> str:
    """The sender's channel of an answered call to ``number`` entering its h extension: the
    earliest moment a dispatcher can learn that the call is over."""
    channel = rf"Local/{dialled(number)}@e2e-remote-\w+;1"
    return rf'Executing \[h@faxmail-send:1\] GotoIf\("{channel}", "0\?done"\)'


@pytest.mark.e2e
@pytest.mark.asterisk
def test_the_far_end_in_asterisk(workdir: Path, start_asterisk: StartAsterisk) -> None:
    """The far end itself, with the shipped dialplan sending and call files placed by hand:
    calls at once collide as on the phone network (busy on a one-line machine, congestion on
    the trunk), a call placed the moment the last one ended finds the line free although the
    far end's h extension still runs notify, and the fail-first machine drops its first call.
    So what tests/test_e2e_queue.py measures is faxmail's queue, not the harness."""
    spool = workdir / "spool"
    for sub in ("outgoing", "fax", "fax-in"):
        (spool / sub).mkdir(parents=True)
    tiff = spool / "fax" / "order.tif"
    pdf = workdir / "order.pdf"
    pdf.write_bytes(order_pdf(1))
    subprocess.run(
        ["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=tiffg4", "-r204x196",
         "-dFIXEDMEDIA", "-dPDFFitPage", "-sPAPERSIZE=a4", f"-sOutputFile={tiff}", str(pdf)],
        check=True,
        timeout=60,
    )  # fmt: skip
    stub = spool / "notify-stub"
    stub.write_text(STUB_NOTIFY)
    stub.chmod(0o755)
    files = asterisk_files()
    files["faxmail-globals.conf"] = (
        f"FAXMAIL_NOTIFY={stub}\nFAXMAIL_SETTINGS=none\nFAXMAIL_INBOX={spool}/fax-in\n"
    )
    ast = start_asterisk(
        REPO / "asterisk",
        files=files,
        spool_dir=spool,
        extra_modules=["func_base64", *REMOTE_MODULES],
        SIP_PORT=free_udp_port("127.0.0.1", "127.0.0.2"),
    )
    watch = FarEndWatch(ast)
    one_line, fail_first = one_line_number(5), fail_first_number(7)
    trunk = [trunk_number(n) for n in (1, 2, 3)]
    for n, number in enumerate([one_line, one_line, *trunk, fail_first]):
        ast.spool_call_file(_call_file(number, tiff, f"a{n}"))
    for number, job in ((one_line, "b1"), (fail_first, "b2")):
        ast.wait_for_log(_answered_call_ended(number), timeout=120)
        ast.spool_call_file(_call_file(number, tiff, job))
    for number in (one_line, fail_first):
        ast.wait_for_log(rf"(?s){_answered_call_ended(number)}.*{_answered_call_ended(number)}")
    deadline = time.monotonic() + 60
    while "0 active calls" not in ast.cli("core show channels count"):
        assert time.monotonic() < deadline, ast.cli("core show channels")
        time.sleep(0.5)

    far_end = watch.read()
    line = far_end.line(dialled(one_line))
    first, second, third = line.arrivals
    assert sorted([first.result, second.result]) == ["answered", "busy"], line.arrivals
    assert (line.max_calls, line.refused, third.result, third.calls) == (2, 1, "answered", 1)
    assert line.unfinished == 0 and len(line.durations()) == 2
    assert sorted(a.result for a in far_end.line(TRUNK).arrivals) == [
        "answered",
        "answered",
        "congestion",
    ]
    assert (far_end.line(TRUNK).max_calls, far_end.line(TRUNK).refused) == (3, 1)
    assert [c.result for c in far_end.fail_first] == ["dropped", "received"]
    # What the sending side reported, as faxmail-notify would have heard it.
    reports = (spool / "notify.args").read_text()
    assert len(re.findall(r"unanswered --job=a[01] .*--reason=5$", reports, re.M)) == 1, reports
    assert len(re.findall(r"unanswered --job=a[234] .*--reason=8$", reports, re.M)) == 1, reports
    assert re.search(r"sent --job=a5 .*--status=FAILED ", reports), reports
    assert re.search(r"sent --job=b2 .*--status=SUCCESS ", reports), reports
    assert re.search(r"sent --job=b1 .*--status=SUCCESS ", reports), reports
