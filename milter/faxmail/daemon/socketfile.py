"""The milter's unix socket: only Postfix may talk to it, and only one daemon may own it.

Whoever can connect to the socket can claim any SASL login or client address, so it is made
0660 with the settings' ``socket_group`` (Postfix's), whether the daemon runs as root or, as
the shipped unit has it, as Asterisk's user with Postfix's group as a supplementary group.
"""

from __future__ import annotations

import grp
import os
import socket
import stat
import time
from pathlib import Path

SOCKET_MODE = 0o660
DIRECTORY_MODE = 0o750


class SocketSetupError(Exception):
    """The socket cannot be made reachable by Postfix (or is another daemon's); the message
    says how to fix it."""


def unix_socket_path(spec: str) -> Path | None:
    """The file of a ``unix:``/``local:`` spec; None for an inet socket."""
    if not spec.startswith(("unix:", "local:")):
        return None
    return Path(spec.split(":", 1)[1])


def _group_id(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketSetupError(
            f"group {group} (settings: socket_group) does not exist: install Postfix or set "
            "socket_group to the group Postfix's smtpd and cleanup run as"
        ) from None


def _may_use_group(gid: int) -> bool:
    return os.geteuid() == 0 or gid == os.getegid() or gid in os.getgroups()


def _who() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def refuse_if_served(path: Path) -> None:
    """Stop a second daemon before it takes the first one's socket.

    libmilter removes an existing socket file at start and its own at exit: a second daemon
    would silently take over the path, and whichever stops first removes the other's socket.
    A stale file (nobody answers) is left for libmilter to replace.
    """
    if not path.exists():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except OSError:
            return
    raise SocketSetupError(
        f"another faxmail-milter already serves {path}: stop it first (systemctl stop "
        "faxmail-milter), or give this one another socket"
    )


def prepare_directory(path: Path, group: str | None) -> None:
    """Create the socket's directory if needed, group ``group`` and 0750 when we create it.

    A directory we own that Postfix's group cannot enter (e.g. a systemd RuntimeDirectory,
    asterisk:asterisk 0750) is given that group; others' directories are left as they are.
    """
    directory = path.parent
    if not directory.exists():
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(DIRECTORY_MODE)
        if group is not None:
            os.chown(directory, -1, _group_id(group))
        return
    if group is None:
        return
    gid = _group_id(group)
    st = directory.stat()
    enterable = st.st_mode & stat.S_IXOTH or (st.st_gid == gid and st.st_mode & stat.S_IXGRP)
    if enterable or st.st_uid != os.geteuid() or not _may_use_group(gid):
        return
    os.chown(directory, -1, gid)
    directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IRGRP | stat.S_IXGRP)


def wait_for(path: Path, seconds: float = 5.0) -> bool:
    """libmilter creates the socket in its own thread, just after we start it."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def secure(path: Path, group: str | None) -> None:
    """Make the socket 0660 with group ``group`` (None: keep the daemon's own group)."""
    if group is not None:
        gid = _group_id(group)
        if not _may_use_group(gid):
            raise SocketSetupError(
                f"cannot give {path} to group {group}: faxmail-milter runs as {_who()}, who "
                f"is not in group {group}; run it with SupplementaryGroups={group} (as the "
                "shipped unit does) or as root"
            )
        os.chown(path, -1, gid)
    os.chmod(path, SOCKET_MODE)


def enterable_by_group(directory: Path, group: str) -> bool:
    """Whether members of ``group`` can walk down to files in ``directory``."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False
    for level in (directory, *directory.parents):
        try:
            st = level.stat()
        except OSError:
            return False
        if not (st.st_mode & stat.S_IXOTH or (st.st_gid == gid and st.st_mode & stat.S_IXGRP)):
            return False
    return True
