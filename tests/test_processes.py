"""Tool runs: a checker's exit is seen the moment it happens, a hung one is killed in time."""

from __future__ import annotations

import subprocess
import time

import pytest

from faxmail.core.processes import exits_by, run_checker


def test_a_checker_reports_its_exit_code_and_output() -> None:
    checked = run_checker(["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
    assert (checked.returncode, checked.stdout, checked.stderr) == (3, "out\n", "err\n")


def test_a_hung_checker_is_killed_at_its_timeout() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        # it closes its output first: the wait for its exit must time out too
        run_checker(["sh", "-c", "exec >&- 2>&-; sleep 30"], 0.5)


def test_exits_by_leaves_the_process_to_be_reaped() -> None:
    proc = subprocess.Popen(["true"])
    assert exits_by(proc, time.monotonic() + 10)
    assert proc.returncode is None  # not reaped: the caller does that (maybe under a lock)
    assert proc.wait() == 0
    assert exits_by(proc, time.monotonic())  # reaped already: gone


def test_exits_by_says_no_for_a_process_still_running() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not exits_by(proc, time.monotonic() + 0.2)
    finally:
        proc.kill()
        proc.wait()
