"""Waking the dispatcher: a datagram on a unix socket in the state folder, best effort.

notify sends one when a call ended (the next call for that line or number can start at once);
the dispatcher also wakes by itself at the queue's next due time and every few seconds, so a
lost datagram only delays a call, it never strands a job. The socket's path may be longer than
a unix address allows (108 bytes): then it is reached through the folder's /proc/self/fd entry.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

WAKE_SOCKET = "dispatch.sock"
_MAX_ADDRESS = 100  # sun_path is 108 bytes, NUL included; a margin for the fd form


def wake_socket(state_dir: Path) -> Path:
    return state_dir / WAKE_SOCKET


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for `path` that fits a sockaddr_un, valid while the context lasts."""
    if len(os.fsencode(path)) <= _MAX_ADDRESS:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def wake(state_dir: Path) -> bool:
    """Poke the dispatcher; False when nobody listens (it wakes by itself soon)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke:
        try:
            with _address(wake_socket(state_dir)) as address:
                poke.sendto(b"wake", address)
        except OSError:
            return False
    return True


def listen(state_dir: Path, owner: tuple[int, int] | None) -> socket.socket:
    """The dispatcher's end: bound afresh (a stale socket file is replaced), mode 0660 and
    owned by Asterisk's user, whose faxmail-notify sends to it. Raises OSError."""
    path = wake_socket(state_dir)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with _address(path) as address:
            server.bind(address)
        if owner is not None:
            os.chown(path, *owner)
        os.chmod(path, 0o660)
    except OSError:
        server.close()
        raise
    return server
