"""The whole fax gateway on this machine, for the queue's end-to-end tests and benchmark 7.

Built as tests/test_e2e.py builds its stack (its comments say why each step is so): a private
Postfix with faxmail-milter, Asterisk 22 in its chroot with the shipped asterisk/ configuration,
faxmail-notify run by the dialplan from this checkout, and the far end of the calls
(tests/e2e/e2e-remote.conf, see infra.farend). Everything lives under one base directory::

    asterisk/  Asterisk's spool: outgoing/, faxmail-staging/, fax/, fax-in/
    state/     job store, notify spool, notify.log, dispatcher.log (owned by asterisk)
    etc/       policy.yaml, settings.yaml (the milter's settings plus notify's and mail's)

The starters are passed in, so that pytest's fixtures (which clean up and attach logs) and
the benchmarks' Lab both build one. If the venv has a ``faxmail-dispatch`` console script
(the queue's dispatcher as its own service), it is started with ``--settings`` and the
gateway's settings.yaml; a dispatcher that is a thread of the milter needs nothing here.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from infra.asterisk import AsteriskInstance, StartAsterisk
from infra.farend import REMOTE_MODULES
from infra.milterproc import MilterProcess
from infra.net import free_udp_port
from infra.postfix import PostfixInstance

REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "tests" / "e2e"
#: The far end over a Local channel: G.711 audio, both ends in the one Asterisk.
REMOTE_CHANNEL = "Local/{number}@e2e-remote"
#: The dispatcher's console script, if it is its own service (see the module docstring).
DISPATCHER_SCRIPT = "faxmail-dispatch"


class GatewayError(RuntimeError):
    """A part of the gateway could not be had; the message says which and why."""


def asterisk_chroot() -> Path:
    """``scripts/asterisk-chroot ensure``: the pristine Asterisk chroot, built if needed."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "asterisk-chroot"), "ensure"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise GatewayError(f"scripts/asterisk-chroot ensure failed:\n{proc.stderr}")
    return Path(proc.stdout.strip().splitlines()[-1])


def asterisk_host_user() -> tuple[int, int]:
    """uid and gid of the host user ``asterisk``, made with the chroot's ids if missing (the
    milter, root here, gives call files and TIFFs to it)."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "asterisk-chroot"), "host-user"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise GatewayError(f"scripts/asterisk-chroot host-user failed:\n{proc.stderr}")
    entry = pwd.getpwnam("asterisk")
    return entry.pw_uid, entry.pw_gid


class MilterStarter(Protocol):
    """Starts faxmail-milter with these settings (merged over its defaults)."""

    def __call__(self, settings: Mapping[str, Any]) -> MilterProcess: ...


class PostfixStarter(Protocol):
    """Starts a private Postfix that hands mail to this milter."""

    def __call__(self, milter: MilterProcess) -> PostfixInstance: ...


class Service:
    """A helper process without a socket to wait for (the dispatcher), output to a file."""

    def __init__(self, argv: list[str], output: Path) -> None:
        self.argv = argv
        self.output = output
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.output, "ab") as out:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() ends its children with it
            )

    def stop(self, timeout: float = 10) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(5)

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""


def dispatcher_command(settings: Path) -> list[str] | None:
    """How to run the dispatcher as its own service, or None when the venv has none."""
    script = Path(sys.executable).parent / DISPATCHER_SCRIPT
    return [str(script), "--settings", str(settings)] if script.exists() else None


@dataclass
class Gateway:
    """One gateway: milter, Postfix, Asterisk (with the far end) and notify, and the
    dispatcher if it is a service of its own."""

    base: Path
    milter: MilterProcess
    postfix: PostfixInstance
    asterisk: AsteriskInstance
    dispatcher: Service | None = None

    @property
    def spool(self) -> Path:
        return self.base / "asterisk"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def settings_path(self) -> Path:
        return self.base / "etc" / "settings.yaml"

    def notify_log(self) -> str:
        path = self.state / "notify.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def dispatcher_log(self) -> str:
        return self.dispatcher.log() if self.dispatcher else "(no dispatcher service)"

    def busy(self) -> list[str]:
        """What is still going on: calls in Asterisk, call files, mail in Postfix's queue."""
        found = re.search(
            r"^(\d+) active calls?", self.asterisk.cli("core show channels count"), re.M
        )
        left = []
        if found is None or found.group(1) != "0":
            left.append(f"{found.group(1) if found else '?'} calls in Asterisk")
        if calls := sorted(p.name for p in (self.spool / "outgoing").glob("*.call")):
            left.append(f"call files {calls}")
        if queued := self.postfix.queue_files():
            left.append(f"{len(queued)} mails in Postfix's queue")
        return left

    def wait_until_idle(self, timeout: float = 60) -> None:
        """Until no call, no call file and no queued mail is left (a test's loose ends)."""
        deadline = time.monotonic() + timeout
        while left := self.busy():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"gateway not idle after {timeout} s: {'; '.join(left)}")
            time.sleep(0.5)  # each look runs `asterisk -rx` in the chroot

    def close(self) -> None:
        """Stop what the starters do not own: the dispatcher service."""
        if self.dispatcher is not None:
            self.dispatcher.stop()


def asterisk_files() -> dict[str, str]:
    """The test's files for /etc/asterisk, over the shipped asterisk/ directory."""
    extensions = (REPO / "asterisk" / "extensions.conf").read_text()
    return {
        "extensions.conf": extensions + "\n#include e2e-remote.conf\n",
        "e2e-remote.conf": (E2E / "e2e-remote.conf").read_text(),
        "faxmail-globals.conf": (E2E / "faxmail-globals.conf").read_text(),
        "faxmail-pjsip-local.conf": (E2E / "faxmail-pjsip-local.conf").read_text(),
    }


def _make_dirs(base: Path, owner: tuple[int, int]) -> tuple[Path, Path, Path]:
    spool, state, etc = base / "asterisk", base / "state", base / "etc"
    for sub in ("outgoing", "faxmail-staging", "fax", "fax-in"):
        (spool / sub).mkdir(parents=True)
    etc.mkdir()
    state.mkdir(mode=0o750)
    os.chown(state, *owner)
    # The milter runs as root here: the job store is made asterisk's first, so that notify
    # (running as asterisk) can write it; SQLite gives -wal and -shm the file's owner.
    store = state / "faxmail.sqlite"
    store.touch(mode=0o640)
    os.chown(store, *owner)
    return spool, state, etc


def build_gateway(
    base: Path,
    policy_yaml: str,
    *,
    owner: tuple[int, int],
    start_milter: MilterStarter,
    make_postfix: PostfixStarter,
    start_asterisk: StartAsterisk,
) -> Gateway:
    """Lay out ``base`` (a fresh 0755 directory) and start everything; ``owner`` is the
    host user asterisk's (uid, gid). The caller stops it: :meth:`Gateway.close`, then
    whatever its starters started."""
    spool, state, etc = _make_dirs(base, owner)
    policy = etc / "policy.yaml"
    policy.write_text(policy_yaml)
    milter = start_milter(
        {
            "policy": str(policy),
            "state_dir": str(state),
            "asterisk": {"spool_dir": str(spool), "user": "asterisk"},
        }
    )
    postfix = make_postfix(milter)
    settings = {
        **milter.settings,
        "mail": {"transport": "smtp", "host": "127.0.0.1", "port": postfix.port},
        "notify": {"inbox_dir": str(spool / "fax-in"), "log_file": str(state / "notify.log")},
    }
    settings_path = etc / "settings.yaml"
    settings_path.write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    asterisk = start_asterisk(
        REPO / "asterisk",
        files=asterisk_files(),
        spool_dir=spool,
        binds=[state],
        ro_binds=[REPO, etc],
        env={"PYTHONPATH": f"{REPO}/milter"},
        extra_modules=["func_base64", *REMOTE_MODULES],
        SIP_PORT=free_udp_port("127.0.0.1", "127.0.0.2"),
        SETTINGS=settings_path,
    )
    gateway = Gateway(base, milter, postfix, asterisk)
    command = dispatcher_command(settings_path)
    if command is not None:
        gateway.dispatcher = Service(command, state / "dispatcher.log")
        gateway.dispatcher.start()
    return gateway
