"""The far end's record, read back from Asterisk's log (tests/infra/farend.py), without Asterisk.

The lines below are as Asterisk 22 writes them for tests/e2e/e2e-remote.conf (copied from a
run, shortened where nothing is read).
"""

from __future__ import annotations

import pytest

from infra.farend import (
    FarEndWatch,
    dialled,
    fail_first_number,
    one_line_number,
    read_far_end,
    trunk_number,
)

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
