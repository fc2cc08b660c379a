"""`faxmail doctor`: the milter socket as Postfix will see it.

smtpd runs ``smtpd_milters`` (or its master.cf ``-o`` override) and cleanup runs
``non_smtpd_milters`` for mail that did not come through smtpd (sendmail, notify's default
transport). Each resolves a ``unix:`` path inside its chroot when master.cf chroots it
(Debian does, for both, at the queue directory). So the check reads what ``postconf`` says,
works out the path each service opens, and connects to it as Postfix's user from inside that
chroot: the connection Postfix will make.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from faxmail.admin.doctorchecks import Finding, Install, run_as

FIX_GROUP = "set socket_group: postfix in the settings; the unit runs the daemon in that group"


@dataclass(frozen=True)
class MilterUser:
    """One master.cf service that talks to milters, and the milters it names."""

    service: str  # e.g. "smtp/inet", "cleanup/unix"
    program: str  # smtpd or cleanup
    chroot: Path | None
    milters: tuple[str, ...]


def parse_params(text: str) -> dict[str, str]:
    """``postconf`` output (``name = value`` lines) as a dict."""
    params = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        if not sep and line.endswith(" ="):
            name, sep, value = line[:-2], " =", ""
        if sep:
            params[name.strip()] = value.strip()
    return params


def split_milters(value: str) -> tuple[str, ...]:
    """A milter list: comma or space separated, an entry may be ``{ spec, option=... }``."""
    specs = []
    for braced, plain in re.findall(r"\{([^}]*)\}|([^\s,{}]+)", value):
        spec = braced.split(",")[0].strip() if braced else plain
        if spec:
            specs.append(spec)
    return tuple(specs)


def milter_users(
    main: dict[str, str], fields: dict[str, str], overrides: dict[str, str]
) -> list[MilterUser]:
    """From ``postconf -x``, ``postconf -F`` and ``postconf -Px`` output (parsed)."""
    queue = Path(main.get("queue_directory", "/var/spool/postfix"))
    cleanup_name = main.get("cleanup_service_name", "cleanup")
    users = []
    for key, command in fields.items():
        service, _, name = key.rpartition("/")
        if name != "command":
            continue
        program = command.split()[0] if command.split() else ""
        if program == "smtpd":
            param = "smtpd_milters"
        elif program == "cleanup" and service.split("/")[0] == cleanup_name:
            param = "non_smtpd_milters"
        else:
            continue
        value = overrides.get(f"{service}/{param}", main.get(param, ""))
        chrooted = fields.get(f"{service}/chroot", "n") == "y"
        users.append(
            MilterUser(service, program, queue if chrooted else None, split_milters(value))
        )
    return users


def unix_path(spec: str) -> str | None:
    kind, _, rest = spec.partition(":")
    return rest if kind in ("unix", "local") else None


def seen_from_host(path: str, chroot: Path | None) -> Path:
    return chroot / path.lstrip("/") if chroot else Path(path)


def postconf(install: Install, *args: str) -> str:
    # /usr/sbin is not on every PATH (a unit's ExecStartPre, an admin's sudo -u).
    found = shutil.which("postconf", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        raise OSError("postconf is not installed")
    argv = [found]
    if install.postfix_config is not None:
        argv += ["-c", str(install.postfix_config)]
    done = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise OSError(done.stderr.strip() or f"postconf {' '.join(args)} failed")
    return done.stdout


def _connector(path: str) -> Callable[[], str | None]:
    def connect() -> str | None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            try:
                s.connect(path)
            except OSError as exc:
                return exc.strerror or str(exc)
        return None

    return connect


def _describe(path: Path) -> str:
    st = path.stat()
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{owner}:{group} {stat.S_IMODE(st.st_mode):04o}"


def _socket_file(install: Install, path: Path) -> Iterator[Finding]:
    assert install.settings is not None
    if not path.exists():
        yield Finding(
            "socket",
            False,
            f"{path} does not exist: start faxmail-milter (systemctl start faxmail-milter; "
            "journalctl -u faxmail-milter says why it stopped)",
        )
        return
    st = path.stat()
    group = install.settings.socket_group
    if not stat.S_ISSOCK(st.st_mode):
        yield Finding("socket", False, f"{path} is not a socket: remove it and restart the milter")
    elif st.st_mode & 0o007:
        yield Finding(
            "socket",
            False,
            f"{path} is {_describe(path)}: every local user could claim any SASL login; "
            f"{FIX_GROUP}",
        )
    elif group is not None and grp.getgrgid(st.st_gid).gr_name != group:
        yield Finding(
            "socket", False, f"{path} is {_describe(path)}, not group {group}: {FIX_GROUP}"
        )
    else:
        yield Finding("socket", True, f"{path} is {_describe(path)}")


def check_socket(install: Install) -> Iterator[Finding]:
    assert install.settings is not None
    ours = unix_path(install.settings.socket)
    if ours is not None:
        yield from _socket_file(install, Path(ours))
    try:
        main = parse_params(postconf(install, "-x"))
        fields = parse_params(postconf(install, "-F"))
        overrides = parse_params(postconf(install, "-Px"))
    except OSError as exc:
        yield Finding(
            "postfix", False, f"cannot read Postfix's configuration ({exc}): install Postfix"
        )
        return
    users = milter_users(main, fields, overrides)
    if ours is None:
        yield from _inet(install, users)
        return
    postfix_user = main.get("mail_owner", "postfix")
    if not any(u.program == "smtpd" and u.milters for u in users):
        yield Finding(
            "postfix",
            False,
            "no smtpd service names a milter: add the lines of "
            "/usr/local/share/faxmail/postfix/main.cf.milter to main.cf, then postfix reload",
        )
    for user in users:
        if not user.milters:
            if user.program == "cleanup":
                yield Finding(
                    "postfix",
                    True,
                    f"{user.service}: non_smtpd_milters is empty: mail sent with sendmail is "
                    "not shown to faxmail",
                )
            continue
        yield from _one_service(user, Path(ours), postfix_user)


def _one_service(user: MilterUser, ours: Path, postfix_user: str) -> Iterator[Finding]:
    where = f"chrooted in {user.chroot}" if user.chroot else "not chrooted"
    paths = [p for p in map(unix_path, user.milters) if p is not None]
    mine = [p for p in paths if seen_from_host(p, user.chroot).resolve() == ours.resolve()]
    if not mine:
        seen = (
            ", ".join(f"{p} = {seen_from_host(p, user.chroot)}" for p in paths) or "no unix socket"
        )
        fix = (
            f"name it unix:/{ours.relative_to(user.chroot)} there"
            if user.chroot and ours.is_relative_to(user.chroot)
            else (
                f"put the socket under {user.chroot} (settings: socket) and name it relative "
                f"to it, or set chroot n for {user.service} in master.cf"
                if user.chroot
                else f"name it unix:{ours} there"
            )
        )
        yield Finding(
            "postfix",
            False,
            f"{user.service} ({user.program}, {where}) opens {seen}, but faxmail-milter "
            f"listens on {ours}: {fix}",
        )
        return
    complaint = run_as(postfix_user, _connector(mine[0]), chroot=user.chroot)
    if complaint:
        fix = FIX_GROUP if "ermission" in complaint else "start faxmail-milter"
        yield Finding(
            "postfix",
            False,
            f"{user.service} ({user.program}, {where}) as user {postfix_user}: connect to "
            f"{mine[0]}: {complaint}: {fix}",
        )
        return
    yield Finding(
        "postfix",
        True,
        f"{user.service} ({user.program}, {where}) reaches the milter as {postfix_user}",
    )


def _inet(install: Install, users: list[MilterUser]) -> Iterator[Finding]:
    assert install.settings is not None
    port, _, host = install.settings.socket.partition(":")[2].partition("@")
    host = host or "127.0.0.1"
    wanted = f"inet:{host}:{port}"
    if not any(wanted in u.milters for u in users if u.program == "smtpd"):
        yield Finding(
            "postfix",
            False,
            f"no smtpd service names {wanted}: set smtpd_milters = {wanted} in main.cf",
        )
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        yield Finding("postfix", False, f"connect to {wanted}: {exc}: start faxmail-milter")
        return
    yield Finding("postfix", True, f"smtpd reaches the milter on {wanted}")
