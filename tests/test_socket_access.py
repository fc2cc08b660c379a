"""The milter's unix socket under the shipped unit's users: the daemon runs as Asterisk's user
(not root) with Postfix's group as a supplementary group, and Postfix's smtpd, running as
``postfix``, must be able to connect; nobody else may. And one socket, one daemon."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.dns import DnsServer
from infra.mail import build_message
from infra.milterproc import MilterProcess, faxmail_milter
from infra.protocols import MakePostfix

pytestmark = pytest.mark.postfix

POLICY = "fax_address: {domains: [example.jp]}\nsenders: [{address: '@example.jp'}]\n"
USER = "asterisk"


def _interpreter_for(user: str) -> list[str]:
    """A Python of this version that ``user`` may run, with our packages on its path.

    The venv's interpreter may live under /root (pyenv), which other users cannot enter:
    the very trap an install under /opt avoids. Then the system's python3.X of the same
    version runs our site-packages (same ABI).
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}"):
        probe = subprocess.run(
            ["runuser", "-u", user, "--", candidate, "-c", "pass"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return [candidate]
    pytest.fail(f"no {version} that user {user} can run (tried {sys.executable})")


@pytest.fixture
def as_asterisk() -> Iterator[None]:
    try:
        pwd.getpwnam(USER)
        grp.getgrnam("postfix")
    except KeyError as exc:
        pytest.fail(f"needs users asterisk and postfix (scripts/asterisk-chroot host-user): {exc}")
    yield


def _daemon(workdir: Path, dns: DnsServer, *, groups: str) -> tuple[MilterProcess, Path]:
    """faxmail-milter as user asterisk, its socket in a directory like systemd's
    RuntimeDirectory (asterisk:asterisk 0750), everything else in ``workdir``."""
    d = workdir / "milter"
    d.mkdir()
    proc = faxmail_milter(
        d, dns=(dns.host, dns.port), policy_yaml=POLICY, settings={"socket_group": "postfix"}
    )
    run_dir = d / "run"
    run_dir.mkdir(mode=0o750)
    run_dir.chmod(0o750)
    sock = run_dir / "milter.sock"
    proc.socket = f"unix:{sock}"
    proc.settings["socket"] = proc.socket
    settings_path = d / "settings.yaml"
    import yaml

    settings_path.write_text(yaml.safe_dump(proc.settings, sort_keys=False))
    for path in (d, *d.rglob("*")):
        shutil.chown(path, USER, USER)
    site = sysconfig.get_paths()["purelib"]
    milter_src = Path(__file__).resolve().parent.parent / "milter"
    proc.argv = [
        "setpriv",
        f"--reuid={USER}",
        f"--regid={USER}",
        f"--groups={groups}" if groups else "--clear-groups",
        "--",
        "env",
        f"PYTHONPATH={milter_src}:{site}",
        *_interpreter_for(USER),
        "-m",
        "faxmail.daemon.main",
        "--settings",
        str(settings_path),
    ]
    return proc, sock


def test_postfix_reaches_the_socket_of_a_daemon_running_as_asterisk(
    workdir: Path, dns: DnsServer, make_postfix: MakePostfix, as_asterisk: None
) -> None:
    proc, sock = _daemon(workdir, dns, groups="postfix")
    with proc:
        st = sock.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert pwd.getpwuid(st.st_uid).pw_name == USER
        assert grp.getgrgid(st.st_gid).gr_name == "postfix"
        assert stat.S_IMODE(st.st_mode) == 0o660
        # The directory was asterisk:asterisk 0750 (smtpd could not enter): now group postfix.
        dst = sock.parent.stat()
        assert grp.getgrgid(dst.st_gid).gr_name == "postfix"
        assert stat.S_IMODE(dst.st_mode) == 0o750
        pf = make_postfix(proc)
        mail = build_message(
            from_addr="bob@other.example", to=["carol@example.jp"], subject="hi", body="hello\n"
        )
        result = pf.send("bob@other.example", ["carol@example.jp"], mail)
        assert result.data is not None and result.data.code == 250, pf.log()[-3000:]
        pf.wait_for_delivery("carol@example.jp")
        assert "Permission denied" not in pf.log()
        # Another local user is refused by the socket's mode.
        nobody = subprocess.run(
            [
                "runuser",
                "-u",
                "nobody",
                "--",
                "python3",
                "-c",
                f"import socket; socket.socket(socket.AF_UNIX).connect({str(sock)!r})",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert nobody.returncode != 0 and "PermissionError" in nobody.stderr


def test_daemon_outside_postfix_group_refuses_to_start_and_says_why(
    workdir: Path, dns: DnsServer, as_asterisk: None
) -> None:
    proc, sock = _daemon(workdir, dns, groups="")
    done = subprocess.run(proc.argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 78, done.stderr
    assert "not in group postfix" in done.stderr
    assert "SupplementaryGroups=postfix" in done.stderr
    assert not sock.exists()


def test_second_daemon_on_the_same_socket_refuses_and_the_first_keeps_serving(
    workdir: Path, dns: DnsServer, make_postfix: MakePostfix, as_asterisk: None
) -> None:
    first, sock = _daemon(workdir, dns, groups="postfix")
    with first:
        inode = sock.stat().st_ino
        second = subprocess.run(first.argv, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 78, second.stderr
        assert "another faxmail-milter already serves" in second.stderr
        assert sock.stat().st_ino == inode
        pf = make_postfix(first)
        mail = build_message(
            from_addr="bob@other.example", to=["carol@example.jp"], subject="hi", body="hi\n"
        )
        result = pf.send("bob@other.example", ["carol@example.jp"], mail)
        assert result.data is not None and result.data.code == 250
    assert os.path.exists(sock) is False
