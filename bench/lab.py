"""The parts every benchmark runs against, built from the test infrastructure (tests/infra).

A :class:`Lab` owns a work directory, the test dnsmasq serving the DKIM keys, and whatever
milters, Postfix instances and Asterisks a benchmark starts; closing it stops them all.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from infra.asterisk import StartAsterisk, asterisk_starter
from infra.dkimkeys import Signer, default_signers, dns_records
from infra.dns import DnsServer
from infra.gateway import asterisk_chroot
from infra.milterproc import MilterProcess, faxmail_milter, passmilter
from infra.postfix import DEFAULT_DOMAINS, PostfixInstance

from .common import ROOT

#: Non-fax benchmark mail goes here; Postfix discards it (delivery is not what is measured,
#: and thousands of Maildir files would only add disk noise).
BENCH_DOMAIN = "bench.example"
FAX_DOMAIN = "example.jp"

#: No rate limits (a benchmark sends hundreds of faxes per hour), room for 20 MB mails.
POLICY = """\
fax_address: {domains: [example.jp]}
senders:
  - address: "@example.jp"
limits: {per_hour: null, per_day: null, max_message_bytes: 40000000}
"""


class Lab:
    def __init__(self, name: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"fxb-{name}-"))
        self.dir.chmod(0o755)  # smtpd (user postfix) must reach milter sockets inside
        self.signers: dict[str, Signer] = default_signers()
        self.dns = DnsServer(log_path=self.dir / "dnsmasq.log")
        self._stack = contextlib.ExitStack()
        self.dns.start(dns_records(self.signers))
        self._stack.callback(self.dns.cleanup)

    @property
    def signer(self) -> Signer:
        return self.signers["example.jp"]

    def close(self) -> None:
        self._stack.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def on_close(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` when the lab closes (before what was started earlier)."""
        self._stack.callback(stop)

    def subdir(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.dir))
        path.chmod(0o755)
        return path

    # ------------------------------------------------------------------ milters

    def faxmail(
        self, socket: str | None = None, *, settings: dict[str, Any] | None = None
    ) -> MilterProcess:
        """faxmail-milter on ``socket`` (default: a unix socket), started as tests/conftest.py
        starts it, but at log level info: debug writes a line per callback, a cost no
        production daemon pays."""
        d = self.subdir("faxmail")
        proc = faxmail_milter(
            d,
            dns=(self.dns.host, self.dns.port),
            policy_yaml=POLICY,
            settings={**({"socket": socket} if socket else {}), **(settings or {})},
            log_level="info",
        )
        return self._start(proc)

    def passmilter(self, socket: str | None = None) -> MilterProcess:
        d = self.subdir("pass")
        return self._start(passmilter(socket or f"unix:{d / 'milter.sock'}", d))

    def floor_milter(self, socket: str | None = None, *, variant: str = "naive") -> MilterProcess:
        """bench/floor_milter.py: the least a milter that ACCEPTs at DATA can cost, under one
        protocol negotiation (see its docstring for the variants)."""
        d = self.subdir("floor")
        spec = socket or f"unix:{d / 'milter.sock'}"
        argv = [sys.executable, "-m", "bench.floor_milter", spec, "--variant", variant]
        proc = MilterProcess(argv, spec, output_path=d / "stdout.log", cwd=ROOT)
        return self._start(proc)

    def dkimpy_milter(self, socket: str | None = None) -> MilterProcess:
        """dkimpy-milter in verify mode.

        - ``InternalHosts`` names an address nobody connects from: by default 127.0.0.1 is
          internal, and it verifies nothing for internal clients.
        - ``DNSOverride``: it looks keys up with dnspython's system resolver (no way to point
          it at our dnsmasq), so it is handed the published key directly; the DNS cost is then
          missing from its side, which flatters it slightly.
        - ``UserID root``: it would drop to another user that cannot read this checkout's
          venv, and then fail to import codecs lazily in its callbacks.
        """
        d = self.subdir("dkimpy")
        spec = socket or f"unix:{d / 'milter.sock'}"
        conf = d / "dkimpy-milter.conf"
        conf.write_text(
            "Syslog no\n"
            "Mode v\n"
            f"Socket {spec}\n"
            "UserID root\n"
            "UMask 0\n"
            "InternalHosts 192.0.2.1\n"
            "AuthservID mx.faxmail.test\n"
            f"DNSOverride {self.signer.key.txt()}\n"
        )
        exe = Path(sys.executable).parent / "dkimpy-milter"
        proc = MilterProcess([str(exe), str(conf)], spec, output_path=d / "stdout.log")
        return self._start(proc)

    def _start(self, proc: MilterProcess) -> MilterProcess:
        proc.start()
        self._stack.callback(proc.stop)
        return proc

    # ------------------------------------------------------------------ Asterisk

    @property
    def asterisk(self) -> StartAsterisk:
        """Starts an Asterisk 22 in its own overlay of the test chroot, as tests/conftest.py's
        ``start_asterisk`` does (the chroot is built on first use); stopped with the lab."""
        return asterisk_starter(asterisk_chroot, lambda ast: self._stack.callback(ast.stop))

    # ------------------------------------------------------------------ Postfix

    def postfix(self, milter: MilterProcess | None = None, **kwargs: Any) -> PostfixInstance:
        """A private Postfix; mail to BENCH_DOMAIN is accepted and discarded."""
        extra = {"transport_maps": f"inline:{{ {BENCH_DOMAIN}=discard: }}"}
        extra.update(kwargs.pop("extra_main_cf", {}))
        pf = PostfixInstance(
            milter.postfix_spec if milter else None,
            base=self.subdir("postfix"),
            domains=(*DEFAULT_DOMAINS, BENCH_DOMAIN),
            extra_main_cf=extra,
            **kwargs,
        )
        pf.start()
        self._stack.callback(pf.stop)
        return pf


def repo_path(*parts: str) -> Path:
    return ROOT.joinpath(*parts)
