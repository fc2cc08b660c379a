"""Small network helpers shared by the infra modules."""

from __future__ import annotations

import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is free for both TCP and UDP on ``host``.

    Both, because dnsmasq binds the same port number for UDP and TCP. There is a race between
    closing the probe sockets and the server binding the port; callers treat a bind failure as
    a start failure, which is rare enough on a test machine.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


def free_udp_port(*hosts: str) -> int:
    """A UDP port free on every one of ``hosts`` (SIP transports on several loopback addresses
    share one port number)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((hosts[0], 0))
            port: int = first.getsockname()[1]
            others: list[socket.socket] = []
            try:
                for host in hosts[1:]:
                    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    others.append(other)
                    other.bind((host, port))
            except OSError:
                continue
            finally:
                for other in others:
                    other.close()
        return port
    raise RuntimeError("no free UDP port")


def wait_tcp(host: str, port: int, timeout: float) -> bool:
    """Wait until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def wait_unix(path: str, timeout: float) -> bool:
    """Wait until something accepts connections on the unix socket ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(path)
                return True
        except OSError:
            time.sleep(0.02)
    return False
