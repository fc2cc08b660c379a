"""What every tool run on untrusted input gets: resource limits, a process-group kill, and
its messages made fit for a reply."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess

_ABSOLUTE_PATH = re.compile(r"(?<![\w/])/(?:[\w.+-]+/)+[\w.+-]*")


def limited_command(argv: list[str], cpu_s: int, memory_bytes: int) -> list[str]:
    """`argv` run under prlimit(1) with CPU, address-space and core-file limits, and killed
    if the daemon dies (setpriv --pdeathsig: a killed milter must not leave a runaway gs).

    Both are set by small programs that then exec the tool, not by a preexec_fn: Python
    documents preexec_fn as unsafe in a threaded process (the child can deadlock before exec),
    and the milter daemon is threaded.

    Raises FileNotFoundError when the tool is not on PATH: prlimit would otherwise exit 127
    and its "failed to execute" line would be judged like the tool's verdict on the document,
    a permanent 550 for a local fault. Raised here, it becomes the daemon's 451 (retried).
    """
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(f"{argv[0]} not found on PATH")
    return [
        "setpriv",
        "--pdeathsig=KILL",
        "--",
        "prlimit",
        f"--cpu={cpu_s}:{cpu_s + 5}",
        f"--as={memory_bytes}",
        "--core=0",
        "--",
        *argv,
    ]


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of `proc`, started with start_new_session=True.

    Only while `proc` has not been reaped: until then its pid, and so the group id, cannot have
    been reused. Does not reap it: the caller waits (maybe after releasing a lock).
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def short_reason(text: str, limit: int = 120) -> str:
    """One line of tool or library output, fit for a reply: no paths, bounded."""
    text = _ABSOLUTE_PATH.sub("<file>", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."
