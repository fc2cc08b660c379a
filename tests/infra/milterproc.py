"""Run a milter (ours or the pass-through baseline) as a subprocess for integration tests."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from infra.net import wait_tcp, wait_unix

#: tests/infra/passmilter.py, runnable as a script.
PASSMILTER = Path(__file__).with_name("passmilter.py")


class MilterStartError(RuntimeError):
    """The milter exited or never opened its socket; the message has its output."""


def parse_socket(spec: str) -> tuple[str, str, int]:
    """Split a milter socket spec into (family, address, port).

    Accepts libmilter's form (``unix:/p``, ``local:/p``, ``inet:PORT@HOST``, ``inet:PORT``)
    and Postfix's (``inet:HOST:PORT``), because the daemon settings use the former and
    smtpd_milters the latter. Returns ("unix", path, 0) or ("inet", host, port).
    """
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return "unix", rest, 0
    if kind == "inet":
        if "@" in rest:
            port, _, host = rest.partition("@")
            return "inet", host or "127.0.0.1", int(port)
        if ":" in rest:
            host, _, port = rest.rpartition(":")
            return "inet", host, int(port)
        return "inet", "127.0.0.1", int(rest)
    raise ValueError(f"unsupported milter socket spec: {spec!r}")


def postfix_spec(spec: str) -> str:
    """The smtpd_milters form of a socket spec (``unix:/p`` or ``inet:HOST:PORT``)."""
    family, addr, port = parse_socket(spec)
    if family == "unix":
        return f"unix:{addr}"
    # libmilter's "any address" forms are reached on loopback.
    host = "127.0.0.1" if addr in ("", "0.0.0.0", "*") else addr
    return f"inet:{host}:{port}"


class MilterProcess:
    """A milter subprocess with its stdout+stderr in ``output_path``.

    ``socket`` is the spec the milter listens on; :attr:`postfix_spec` is the value for
    Postfix. ``extra_logs`` are further files (e.g. the daemon's own log_file) that
    :meth:`log` appends, so a failing test can show everything in one place.
    """

    def __init__(
        self,
        argv: Sequence[str],
        socket: str,
        *,
        output_path: Path,
        extra_logs: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        accessible_to: str | None = "postfix",
    ) -> None:
        self.argv = list(argv)
        self.socket = socket
        self.output_path = output_path
        self.extra_logs = list(extra_logs)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.accessible_to = accessible_to
        self.proc: subprocess.Popen[bytes] | None = None
        #: Free for the creator: e.g. the settings the daemon was started with.
        self.settings: dict[str, Any] = {}

    @property
    def postfix_spec(self) -> str:
        return postfix_spec(self.socket)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start the process and wait until its socket accepts connections."""
        family, addr, port = parse_socket(self.socket)
        if family == "unix":
            # A stale socket file from an earlier run would satisfy nothing but confuse us.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(addr)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.output_path, "ab") as out:
            # Own session: stop() kills the whole group, including any Ghostscript the
            # milter started (a runaway gs outlives its parent otherwise).
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MilterStartError(
                    f"{self.argv} exited with {self.proc.returncode} before listening on "
                    f"{self.socket}\n{self.log()}"
                )
            step = min(0.2, max(0.0, deadline - time.monotonic()))
            if family == "unix":
                # Root connects to any socket; smtpd (user postfix) needs write access, which
                # a milter may grant just after listen(): wait for that too.
                ok = wait_unix(addr, step) and self._accessible(addr)
            else:
                ok = wait_tcp(addr, port, step)
            if ok:
                return
            time.sleep(0.01)
        self.stop()
        why = "listening on"
        if family == "unix" and os.path.exists(addr) and not self._accessible(addr):
            why = f"making writable for {self.accessible_to}"
        raise MilterStartError(
            f"{self.argv} not {why} {self.socket} after {timeout}s\n{self.log()}"
        )

    def _accessible(self, path: str) -> bool:
        """Whether user ``accessible_to`` may connect to the unix socket (needs +w)."""
        if self.accessible_to is None:
            return True
        try:
            pw = pwd.getpwnam(self.accessible_to)
            st = os.stat(path)
        except (KeyError, OSError):
            return False
        groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if self.accessible_to in g.gr_mem}
        if st.st_uid == pw.pw_uid:
            return bool(st.st_mode & stat.S_IWUSR)
        if st.st_gid in groups:
            return bool(st.st_mode & stat.S_IWGRP)
        return bool(st.st_mode & stat.S_IWOTH)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL the process group. Idempotent.

        Returns the exit code (negative for a signal), or None if never started.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            next_poke = time.monotonic() + 0.05
            while self.proc.poll() is None and time.monotonic() < deadline:
                if time.monotonic() >= next_poke:
                    # libmilter's listener notices a stop request only when its poll() wakes
                    # up: every 5 s (MI_CHK_TIME) or on a new connection. Poke it.
                    self._poke()
                    next_poke = time.monotonic() + 0.5
                time.sleep(0.01)
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Leftover children (gs, ...) in the group die with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def _poke(self) -> None:
        family, addr, port = parse_socket(self.socket)
        with contextlib.suppress(OSError):
            if family == "unix":
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(0.2)
                    s.connect(addr)
            else:
                socket.create_connection((addr, port), timeout=0.2).close()

    def log(self) -> str:
        """Captured stdout/stderr followed by every extra log file."""
        parts: list[str] = []
        for path in (self.output_path, *self.extra_logs):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                text = "(missing)"
            parts.append(f"--- {path}\n{text}")
        return "\n".join(parts)

    def __enter__(self) -> MilterProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def passmilter(socket: str, workdir: Path, *, dump: Path | None = None) -> MilterProcess:
    """A not-yet-started pass-through milter listening on ``socket`` (libmilter form)."""
    argv = [sys.executable, str(PASSMILTER), socket]
    if dump is not None:
        argv += ["--dump", str(dump)]
    return MilterProcess(argv, socket, output_path=workdir / "passmilter.out")


def faxmail_command(settings_path: Path) -> list[str]:
    """How to run the daemon: the venv's console script, else ``python -m``."""
    script = Path(sys.executable).parent / "faxmail-milter"
    if script.exists():
        return [str(script), "--settings", str(settings_path)]
    return [sys.executable, "-m", "faxmail.daemon.main", "--settings", str(settings_path)]


def faxmail_milter(
    d: Path,
    *,
    dns: tuple[str, int],
    policy_yaml: str,
    settings: Mapping[str, Any] | None = None,
    log_level: str = "debug",
) -> MilterProcess:
    """A not-yet-started faxmail-milter whose every file lives in ``d``.

    Missing settings get defaults there: ``socket`` (unix:d/milter.sock), ``policy`` (the
    written ``policy_yaml``), ``state_dir``, ``log_file``, ``authserv_id`` (mx.faxmail.test),
    ``dns`` (host, port) and ``asterisk`` (spool d/asterisk with outgoing/, faxmail-staging/,
    fax/; user None: the test machine has no asterisk user). Given keys win (shallow merge);
    the full settings are on ``.settings``.
    """
    policy_path = d / "policy.yaml"
    policy_path.write_text(policy_yaml)
    (d / "state").mkdir()
    spool = d / "asterisk"  # never /var/spool/asterisk
    for sub in ("outgoing", "faxmail-staging", "fax"):
        (spool / sub).mkdir(parents=True)
    full: dict[str, Any] = {
        "socket": f"unix:{d / 'milter.sock'}",
        "policy": str(policy_path),
        "state_dir": str(d / "state"),
        "log_level": log_level,
        "log_file": str(d / "milter.log"),
        "authserv_id": "mx.faxmail.test",  # the test Postfix's myhostname
        "dns": {"nameservers": [dns[0]], "port": dns[1], "timeout": 2},
        "asterisk": {"spool_dir": str(spool), "user": None},
    }
    full.update(settings or {})
    settings_path = d / "settings.yaml"
    settings_path.write_text(yaml.safe_dump(full, sort_keys=False, allow_unicode=True))
    parse_socket(str(full["socket"]))  # fail early on a spec we cannot wait for
    proc = MilterProcess(
        faxmail_command(settings_path),
        str(full["socket"]),
        output_path=d / "stdout.log",
        extra_logs=[Path(full["log_file"])],
        cwd=d,
    )
    proc.settings = full
    return proc
