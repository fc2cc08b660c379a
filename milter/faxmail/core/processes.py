"""What every tool run on untrusted input gets: resource limits, a process-group kill, and
its messages made fit for a reply."""

from __future__ import annotations

import contextlib
import os
import re
import select
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

_ABSOLUTE_PATH = re.compile(r"(?<![\w/])/(?:[\w.+-]+/)+[\w.+-]*")
# A damaged file can make a checker print a line per object: keep only the start of its output.
OUTPUT_LIMIT = 16 * 1024
CHECKER_CPU_S = 30
CHECKER_MEMORY_BYTES = 1024**3


def limited_command(
    argv: list[str], cpu_s: int, memory_bytes: int, *, file_bytes: int | None = None
) -> list[str]:
    """`argv` run under prlimit(1) with CPU, address-space and core-file limits (and, given
    `file_bytes`, a largest file it may write), and killed if the daemon dies (setpriv
    --pdeathsig: a killed milter must not leave a runaway gs).

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
        *([f"--fsize={file_bytes}"] if file_bytes is not None else []),
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


def exits_by(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Whether `proc` exits before `deadline` (time.monotonic()), without reaping it.

    A pidfd becomes readable the moment the process exits; Popen.wait(timeout) instead polls
    with sleeps that grow to 50 ms, and so adds up to that to every tool run it waits for.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return True  # already reaped
    except OSError:  # a kernel without pidfds (before Linux 5.3): poll, leaving it unreaped
        while True:
            try:
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    return True
            except ChildProcessError:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
    try:
        ready, _, _ = select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
        return bool(ready)
    finally:
        os.close(pidfd)


def short_reason(text: str, limit: int = 120) -> str:
    """One line of tool or library output, fit for a reply: no paths, bounded."""
    text = _ABSOLUTE_PATH.sub("<file>", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Checked:
    """What a checker said: its exit code and the start of its output."""

    returncode: int
    stdout: str
    stderr: str


def run_checker(argv: list[str], timeout_s: float, *, limited: bool = True) -> Checked:
    """Run a checking tool (qpdf, tiffinfo) on a file: limited, in its own process group,
    outputs cut to OUTPUT_LIMIT; the group is killed when it ends or `timeout_s` passes.
    `limited` False: no CPU/memory limits or parent-death signal (two programs fewer to start,
    3 ms), for a file of our own whose size and structure bound the tool's work.

    Raises subprocess.TimeoutExpired (the group killed), FileNotFoundError (tool missing).
    """
    if not limited and shutil.which(argv[0]) is None:  # limited_command checks it itself
        raise FileNotFoundError(f"{argv[0]} not found on PATH")
    proc = subprocess.Popen(
        limited_command(argv, CHECKER_CPU_S, CHECKER_MEMORY_BYTES) if limited else argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    kept = {out_fd: bytearray(), err_fd: bytearray()}
    deadline = time.monotonic() + timeout_s
    try:
        with selectors.DefaultSelector() as selector:
            for fd in kept:
                selector.register(fd, selectors.EVENT_READ)
            open_fds = len(kept)
            while open_fds and time.monotonic() < deadline:
                for key, _ in selector.select(deadline - time.monotonic()):
                    fd = int(key.fd)
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        selector.unregister(fd)
                        open_fds -= 1
                    elif len(kept[fd]) < OUTPUT_LIMIT:
                        kept[fd] += chunk[: OUTPUT_LIMIT - len(kept[fd])]
        if not exits_by(proc, deadline):
            raise subprocess.TimeoutExpired(argv, timeout_s)
        rc = proc.wait()
    finally:
        kill_group(proc)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    out, err = (kept[fd].decode("utf-8", "replace") for fd in (out_fd, err_fd))
    return Checked(rc, out, err)
