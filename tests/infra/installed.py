"""An installed faxmail in a Debian 12 root (tests/test_install.py): the install itself, the
admin's part of README "Install for production", and ways to use and break the result."""

from __future__ import annotations

import hashlib
import os
import shutil
import smtplib
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra import unitrun
from infra.asterisk import AsteriskInstance
from infra.debianroot import CACHE, DebianRoot, run
from infra.dns import DnsServer
from infra.net import free_port

REPO = Path(__file__).resolve().parent.parent.parent
SOCKET = "/var/spool/postfix/faxmail/milter.sock"
UNIT = "/usr/local/lib/systemd/system/faxmail-milter.service"
WHEELS = "/var/cache/faxmail-wheels"
POLICY = """\
fax_address: {domains: [example.jp]}
senders: [{address: "@example.jp"}]
notify: {from_address: "FAX Gateway <fax-gw@example.jp>"}
"""


def wheelhouse() -> Path:
    """What pip needs, downloaded once on the host (the project's dependencies, and setuptools
    for building it, pymilter and the other sdists)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]
    key = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]
    target = CACHE / f"wheelhouse-{key}"
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        run([sys.executable, "-m", "pip", "download", "-q", "-d", target, *wanted], timeout=900)
        (target / ".complete").touch()
    return target


def copy_checkout(root: DebianRoot) -> None:
    files = run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    listed = [f for f in files.split("\0") if f and (REPO / f).is_file()]
    dest = root.path("/usr/src/faxmail")
    dest.mkdir(parents=True)
    for name in listed:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)


def postconf_lines() -> list[str]:
    """The active ``name = value`` lines of postfix/main.cf.milter."""
    lines = []
    for raw in (REPO / "postfix/main.cf.milter").read_text().splitlines():
        if raw.strip() and not raw.startswith("#") and " = " in raw:
            lines.append(raw.strip())
    return lines


@dataclass
class Installed:
    root: DebianRoot
    smtp_port: int
    install_log: str
    unit: unitrun.Unit
    milter: subprocess.Popen[bytes] | None = None

    def doctor(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "chroot",
                self.root.root,
                "/usr/bin/env",
                "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "faxmail",
                "doctor",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    @property
    def milter_log(self) -> Path:
        return self.root.dir / "milter.log"

    def start_milter(self) -> None:
        pre = unitrun.run_pre(self.root.root, self.unit)
        assert pre.returncode == 0, pre.stdout + pre.stderr
        self.milter = unitrun.start(self.root.root, self.unit, self.milter_log)
        # Ready when the socket is there with its final mode (set just after listen()).
        deadline = time.monotonic() + 30
        while not self._socket_ready():
            assert self.milter.poll() is None, self.milter_log.read_text()
            assert time.monotonic() < deadline, self.milter_log.read_text()
            time.sleep(0.1)

    def _socket_ready(self) -> bool:
        try:
            return stat.S_IMODE(self.root.path(SOCKET).stat().st_mode) == 0o660
        except FileNotFoundError:
            return False

    def stop_milter(self) -> None:
        if self.milter is not None and self.milter.poll() is None:
            os.killpg(self.milter.pid, 15)
            self.milter.wait(20)
        self.milter = None

    def edit_yaml(self, inside: str, changes: Mapping[str, object]) -> None:
        path = self.root.path(inside)
        data = yaml.safe_load(path.read_text()) or {}
        data.update(changes)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def send(self, sender: str, rcpt: str, message: bytes) -> tuple[int, str]:
        smtp = smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=120)
        try:
            smtp.ehlo("client.example.jp")
            smtp.mail(sender)
            code, text = smtp.rcpt(rcpt)
            if code >= 400:
                return code, text.decode()
            reply: bytes | str
            try:
                code, reply = smtp.data(message)
            except smtplib.SMTPDataError as exc:
                code, reply = exc.smtp_code, exc.smtp_error
            return code, reply.decode() if isinstance(reply, bytes) else reply
        finally:
            smtp.close()

    def install(self) -> str:
        """scripts/install from the checkout in /usr/src/faxmail, as root in the root."""
        return self.root.run(
            "/usr/src/faxmail/scripts/install", "--wheelhouse", WHEELS, timeout=1800
        )


def name_of(root: DebianRoot, uid: int) -> str:
    for line in root.path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if int(fields[2]) == uid:
            return fields[0]
    return str(uid)


def configure_postfix(root: DebianRoot, smtp_port: int) -> None:
    """main.cf gets postfix/main.cf.milter's lines (as README says), then this test's own
    choices: no syslog in a chroot, a free loopback port instead of 25 (the machine is shared),
    mail for example.jp accepted (fax+... is removed by the milter); then Postfix starts as
    Debian's unit starts it."""
    root.run("postconf", "-e", *postconf_lines())
    root.run(
        "postconf",
        "-e",
        "maillog_file=/var/log/postfix.log",
        "inet_interfaces=127.0.0.1",
        "inet_protocols=ipv4",
        "mydestination=example.jp, localhost",
        "myhostname=mx.example.jp",
        "recipient_delimiter=+",
        "smtp_dns_support_level=disabled",
    )
    master = root.path("/etc/postfix/master.cf")
    master.write_text(
        master.read_text().replace("\nsmtp      inet", f"\n127.0.0.1:{smtp_port} inet", 1)
    )
    with open(root.path("/etc/aliases"), "a") as aliases:
        aliases.write("fax: root\n")
    root.run("newaliases")
    root.run("/usr/lib/postfix/configure-instance.sh", "-")
    root.run("postfix", "start")


@contextmanager
def installed_root(dns: DnsServer, asterisk_root: Path) -> Iterator[Installed]:
    """A Debian 12 root with faxmail installed and configured, Postfix and the milter running,
    and a real Asterisk's control socket at /run/asterisk."""
    houses = wheelhouse()
    with DebianRoot() as root:
        copy_checkout(root)
        wheels = root.path(WHEELS)
        wheels.mkdir(parents=True)
        run(["mount", "--bind", houses, wheels])
        run(["mount", "-o", "remount,bind,ro", wheels])
        state = Installed(root, free_port("127.0.0.1"), "", unitrun.Unit.parse(""))
        state.install_log = state.install()
        state.unit = unitrun.Unit.parse(root.path(UNIT).read_text())
        root.path("/etc/faxmail/policy.yaml").write_text(POLICY)
        settings = {"dns": {"nameservers": [dns.host], "port": dns.port, "timeout": 3}}
        state.edit_yaml("/etc/faxmail/settings.yaml", settings)
        configure_postfix(root, state.smtp_port)
        # With the modules asterisk/README.md section 1 lists (the instance loads the rest).
        asterisk = AsteriskInstance(asterisk_root, REPO / "asterisk", extra_modules=["func_base64"])
        run_dir = root.path("/run/asterisk")
        try:
            asterisk.start()
            run_dir.mkdir(parents=True, exist_ok=True)
            run(["mount", "--bind", asterisk.merged / "run/asterisk", run_dir])
            state.start_milter()
            yield state
        finally:
            state.stop_milter()
            subprocess.run(["umount", "-l", run_dir], capture_output=True, check=False)
            asterisk.stop()
