"""Run a systemd service's commands inside a chroot the way its unit says, without systemd.

No systemd runs on the test machines, so the install test cannot ``systemctl start``. This
reads the installed unit file and runs its ``ExecStartPre=``/``ExecStart=`` lines in a mount
namespace of their own, emulating the directives that decide whether the shipped unit works:

- ``User=``, ``Group=``, ``SupplementaryGroups=`` (setpriv, names resolved in the chroot),
  ``UMask=``, ``NoNewPrivileges=``;
- ``ProtectSystem=strict``: the whole root read-only except ``ReadWritePaths=`` (a leading
  ``-`` lets a missing path pass, as systemd does) and ``StateDirectory=`` (created with
  ``StateDirectoryMode=``, owned by ``User=``/``Group=``, as systemd does at each start);
- ``ProtectHome=yes``: /home, /root and /run/user empty and inaccessible;
- ``PrivateTmp=yes``: an empty /tmp and /var/tmp.

Not emulated: ``PrivateDevices=``, ``ProtectKernelTunables=``, ``ProtectControlGroups=``,
``RestrictAddressFamilies=``, ``LimitNOFILE=``, restarts.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Unit:
    service: dict[str, list[str]]

    @classmethod
    def parse(cls, text: str) -> Unit:
        section, service = "", dict[str, list[str]]()
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]":
                key, _, value = line.partition("=")
                service.setdefault(key.strip(), []).append(value.strip())
        return cls(service)

    def one(self, key: str, default: str = "") -> str:
        values = self.service.get(key, [])
        return values[-1] if values else default

    def words(self, key: str) -> list[str]:
        return [w for value in self.service.get(key, []) for w in value.split()]


def _mount_script(root: Path, unit: Unit) -> list[str]:
    user, group = unit.one("User", "root"), unit.one("Group", "root")
    steps = []
    writable = []
    for name in unit.words("StateDirectory"):
        state = f"/var/lib/{name}"
        mode = unit.one("StateDirectoryMode", "0755")
        steps.append(
            f"chroot {root} sh -c 'mkdir -p {state} && chown {user}:{group} {state} "
            f"&& chmod {mode} {state}'"
        )
        writable.append(state)
    for path in unit.words("ReadWritePaths"):
        optional = path.startswith("-")
        path = path.lstrip("-")
        host = f"{root}{path}"
        check = (
            f"[ -e {host} ] || {'true' if optional else f'{{ echo missing {path}; exit 226; }}'}"
        )
        steps.append(check)
        writable.append(path)
    for path in writable:
        host = f"{root}{path}"
        steps.append(f"if [ -e {host} ]; then mount --bind {host} {host}; fi")
    if unit.one("ProtectSystem") == "strict":
        steps.append(f"mount -o remount,bind,ro {root}")
    if unit.one("PrivateTmp") == "yes":
        steps += [
            f"mount -t tmpfs -o mode=1777 tmpfs {root}/tmp",
            f"mount -t tmpfs -o mode=1777 tmpfs {root}/var/tmp",
        ]
    if unit.one("ProtectHome") == "yes":
        for path in ("/home", "/root", "/run/user"):
            steps.append(
                f"if [ -d {root}{path} ]; then mount -t tmpfs -o mode=000 tmpfs {root}{path}; fi"
            )
    return steps


def command(root: Path, unit: Unit, exec_line: str) -> list[str]:
    """The argv that runs one Exec line of ``unit`` inside ``root`` as the unit would."""
    user, group = unit.one("User", "root"), unit.one("Group", "root")
    groups = ",".join(unit.words("SupplementaryGroups"))
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={group}"]
    setpriv.append(f"--groups={groups}" if groups else "--clear-groups")
    if unit.one("NoNewPrivileges") == "yes":
        setpriv.append("--no-new-privs")
    inner = (
        f"umask {unit.one('UMask', '0022')} && exec {shlex.join(setpriv)} -- "
        f"{shlex.join(shlex.split(exec_line.lstrip('-@')))}"
    )
    chrooted = shlex.join(
        [
            "chroot",
            str(root),
            "/usr/bin/env",
            "-i",
            f"PATH={_PATH}",
            "LANG=C.UTF-8",
            "sh",
            "-c",
            inner,
        ]
    )
    script = " && ".join([*_mount_script(root, unit), f"exec {chrooted}"])
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", script]


def run_pre(root: Path, unit: Unit, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Every ``ExecStartPre=`` in order; the first failure is returned (as systemd stops)."""
    done = subprocess.CompletedProcess[str]([], 0, "", "")
    for line in unit.service.get("ExecStartPre", []):
        done = subprocess.run(
            command(root, unit, line),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0 and not line.startswith("-"):
            return done
    return done


def start(root: Path, unit: Unit, log: Path) -> subprocess.Popen[bytes]:
    """``ExecStart=`` in the background, its output in ``log``; the caller stops it."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            command(root, unit, unit.one("ExecStart")),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
