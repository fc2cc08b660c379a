"""A private authoritative-only DNS server (dnsmasq) on loopback for DKIM key lookups.

dnsmasq takes TXT data on its command line (``--txt-record=name,string,string...``):
each comma starts a new character-string, quotes are *not* stripped on the command line,
and a string longer than 255 bytes is split by dnsmasq itself into 255-byte
character-strings. dnspython returns them as ``rdata.strings`` and dkimpy joins them, so a
2048-bit key (~400 bytes of TXT) needs no care from us beyond avoiding commas.

Every name without a record answers NXDOMAIN (``--local=/#/``), like a real zone, rather
than REFUSED.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import dns.resolver

from infra.net import free_port

#: One TXT value, or several for several TXT records at the same name.
TxtRecords = Mapping[str, str | Sequence[str]]


class DnsError(RuntimeError):
    """dnsmasq did not start; the message carries its output."""


class DnsServer:
    """dnsmasq serving only the given TXT records on ``host:port`` (UDP and TCP).

    The port stays the same across :meth:`stop` / :meth:`start` / :meth:`restart`, so a
    milter configured once keeps pointing at it. :meth:`stop` simulates a dead server and
    :meth:`pause` a hung one; to dnspython both look the same (a timeout: it sends UDP on an
    unconnected socket, so the ICMP port-unreachable from a dead port is never seen), but a
    paused server answers the queued queries on :meth:`resume`.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="fxm-dnsmasq-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = log_path
        self.records: dict[str, list[str]] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # ----------------------------------------------------------------- lifecycle

    def _argv(self) -> list[str]:
        argv = [
            "dnsmasq",
            "--keep-in-foreground",
            f"--port={self.port}",
            f"--listen-address={self.host}",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file",  # empty value: write no pid file (the default is system-wide)
            "--cache-size=0",
            "--local=/#/",
            "--log-facility=-",
            "--log-queries",
        ]
        for name, values in self.records.items():
            for value in values:
                argv.append(f"--txt-record={name},{value}")
        return argv

    @staticmethod
    def normalise(records: TxtRecords) -> dict[str, list[str]]:
        """Records in the form kept in :attr:`records` (lower-case names, lists)."""
        out: dict[str, list[str]] = {}
        for name, value in records.items():
            values = [value] if isinstance(value, str) else list(value)
            for v in values:
                # A comma would start a new character-string; backslash is an escape.
                if "," in v or "\\" in v or "," in name:
                    raise ValueError(f"TXT data for {name} cannot contain ',' or '\\': {v!r}")
            out[name.rstrip(".").lower()] = values
        return out

    def start(self, records: TxtRecords | None = None, timeout: float = 10) -> None:
        """Start serving ``records`` (or the previous set); returns once it answers."""
        if self.proc is not None and self.proc.poll() is None:
            raise DnsError("dnsmasq already running; use restart()")
        if records is not None:
            self.records = self.normalise(records)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._paused = False
        deadline = time.monotonic() + timeout
        query = dns.message.make_query("ready.invalid.", dns.rdatatype.TXT)
        while True:
            if self.proc.poll() is not None:
                raise DnsError(f"dnsmasq exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # Short per-try timeout: a query sent before the bind() is simply lost.
                dns.query.udp(query, self.host, port=self.port, timeout=0.02)
                return
            except (dns.exception.Timeout, OSError) as e:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise DnsError(f"dnsmasq not answering after {timeout}s:\n{self.log()}") from e
                time.sleep(0.01)

    def stop(self) -> None:
        """Stop dnsmasq (idempotent): later queries to the port time out."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if self._paused:
                self.proc.send_signal(signal.SIGCONT)  # a stopped process ignores SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._paused = False
        self.proc = None

    def cleanup(self) -> None:
        """Stop, and remove the log file if this object chose it."""
        self.stop()
        if self._own_log:
            with contextlib.suppress(FileNotFoundError):
                self.log_path.unlink()

    def restart(self, records: TxtRecords | None = None) -> None:
        """Stop and start again on the same port, optionally with new records."""
        self.stop()
        self.start(records)

    def pause(self) -> None:
        """SIGSTOP dnsmasq: queries pile up unanswered and clients time out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Undo :meth:`pause`; queued queries are then answered."""
        if self.proc is not None and self._paused:
            self.proc.send_signal(signal.SIGCONT)
            self._paused = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self._paused

    def log(self) -> str:
        """dnsmasq's output, including every query (--log-queries)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ----------------------------------------------------------------- clients

    def resolver(self, timeout: float = 2.0) -> dns.resolver.Resolver:
        """A dnspython resolver that asks only this server (ignores /etc/resolv.conf)."""
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [self.host]
        r.port = self.port
        r.timeout = timeout
        r.lifetime = timeout
        return r

    def dnsfunc(self, timeout: float = 2.0) -> Callable[..., bytes | None]:
        """A ``dnsfunc`` for ``dkim.verify``: TXT of ``name`` joined, or None if absent.

        Errors other than NXDOMAIN/NoAnswer propagate, so tests can tell a dead server from
        a missing key (dkimpy's own lookup turns both into None).
        """
        resolver = self.resolver(timeout)

        def lookup(name: bytes, timeout: float = timeout) -> bytes | None:
            try:
                answer = resolver.resolve(name.decode("ascii"), "TXT", lifetime=timeout)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                return None
            for rdata in answer:
                return b"".join(rdata.strings)
            return None

        return lookup

    def txt(self, name: str) -> list[bytes]:
        """All TXT records at ``name``, each with its character-strings joined."""
        with contextlib.suppress(dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return [b"".join(r.strings) for r in self.resolver().resolve(name, "TXT")]
        return []


class RawDnsResponder:
    """A hostile DNS server: answers every UDP and TCP query on ``host:port`` with the bytes
    ``answer(query)`` returns, however malformed. For lies dnsmasq cannot tell.

    Bind it to a stopped :class:`DnsServer`'s port so a running milter asks it.
    """

    def __init__(self, host: str, port: int, answer: Callable[[bytes], bytes]) -> None:
        self.host, self.port, self.answer = host, port, answer
        self.queries = 0
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> RawDnsResponder:
        self._udp.bind((self.host, self.port))
        self._tcp.bind((self.host, self.port))
        self._tcp.listen(8)
        for sock in (self._udp, self._tcp):
            sock.settimeout(0.1)
        for serve in (self._serve_udp, self._serve_tcp):
            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._udp.close()
        self._tcp.close()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self._udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.queries += 1
            with contextlib.suppress(OSError):
                self._udp.sendto(self.answer(query)[:65507], client)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn, contextlib.suppress(OSError, struct.error):
                conn.settimeout(2)
                (length,) = struct.unpack(">H", conn.recv(2))
                query = conn.recv(length)
                self.queries += 1
                reply = self.answer(query)[:65535]
                conn.sendall(struct.pack(">H", len(reply)) + reply)
