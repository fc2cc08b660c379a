"""A private, throwaway Postfix instance for integration tests (must run as root).

Layout under ``base`` (a fresh temp dir unless given)::

    etc/            config_directory: main.cf, master.cf, sasl/smtpd.conf, sasl/sasldb2
    spool/          queue_directory
    data/           data_directory (owned by postfix)
    mail/<domain>/  one Maildir per test domain (virtual(8), owned by ``vmail_uid``)
    log/maillog     maillog_file, written by postlogd (there is no syslog here)

Every address at a test domain is accepted and delivered to that domain's Maildir: virtual(8)
refuses ``$1`` substitution from regexp maps, so a per-address Maildir is impossible without
listing addresses. virtual(8) prepends ``Delivered-To: <recipient>`` to each copy, and
:meth:`PostfixInstance.messages` filters on it, so tests still see per-address mailboxes.

With a milter, its settings are the shipped ``postfix/main.cf.milter`` as an admin pastes it
(:func:`shipped_milter_settings`), so a broken sample breaks the tests. One value differs, and
only it is replaced: ``smtpd_milters``, whose shipped ``unix:/faxmail/milter.sock`` is the
socket as Debian's chrooted smtpd and cleanup see it; this instance runs every service
unchrooted, with the milter's socket where the test put it. A test's own limits and timeouts
(constructor arguments, ``extra_main_cf``) are applied after the sample.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import os
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from infra.net import free_port

REPO = Path(__file__).resolve().parents[2]
#: The milter lines an admin pastes into main.cf.
SHIPPED_MILTER_CF = REPO / "postfix" / "main.cf.milter"
#: The socket those lines name, as chrooted smtpd and cleanup see it: replaced by the milter's.
SHIPPED_SOCKET = "unix:/faxmail/milter.sock"

#: Domains delivered locally into Maildirs unless the caller chooses others.
DEFAULT_DOMAINS: tuple[str, ...] = ("example.jp", "other.example")

#: Realm the SASL users live in; smtpd looks users up as user@smtpd_sasl_local_domain.
SASL_REALM = "faxmail.test"

#: Queue subdirectories that hold messages not yet delivered or bounced.
_QUEUE_DIRS = ("maildrop", "incoming", "active", "deferred", "hold")


class Reply(NamedTuple):
    """One SMTP reply: numeric code and text (multi-line replies joined with newlines)."""

    code: int
    text: str


#: Stands for a reply that never came because the server closed the connection.
DISCONNECTED = Reply(-1, "connection closed by server")


@dataclass
class SendResult:
    """What the server answered at each step of one SMTP transaction."""

    mail: Reply
    rcpts: dict[str, Reply] = field(default_factory=dict)
    #: Final answer after the message body (or the DATA command's refusal); None when DATA was
    #: never sent because MAIL or every RCPT was refused.
    data: Reply | None = None
    auth: Reply | None = None

    @property
    def accepted(self) -> list[str]:
        """Recipients that got a 2xx at RCPT."""
        return [r for r, rep in self.rcpts.items() if 200 <= rep.code < 300]

    @property
    def queue_id(self) -> str | None:
        """Postfix queue id from ``250 2.0.0 Ok: queued as XXXX``, if the mail was queued."""
        if self.data is None:
            return None
        m = re.search(r"queued as ([0-9A-Za-z]+)", self.data.text)
        return m.group(1) if m else None


class PostfixError(RuntimeError):
    """Postfix could not be set up or started; the message carries Postfix's own diagnostics."""


def parse_main_cf(text: str) -> dict[str, str]:
    """``name = value`` lines as Postfix reads main.cf: ``#`` lines are comments, a line
    starting with white space continues the previous one; the last definition wins."""
    params: dict[str, str] = {}
    name: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if name is None:
                raise ValueError(f"continuation line without a parameter: {raw!r}")
            params[name] = f"{params[name]} {line.strip()}".strip()
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"not a 'name = value' line: {raw!r}")
        name = key.strip()
        params[name] = value.strip()
    return params


def shipped_milter_settings(milter: str, path: Path = SHIPPED_MILTER_CF) -> dict[str, str]:
    """The parameters of ``postfix/main.cf.milter``, with ``smtpd_milters`` set to ``milter``
    (the one value that must differ here, see the module docstring); PostfixError when the
    sample no longer names the socket this substitution expects."""
    params = parse_main_cf(path.read_text())
    shipped = params.get("smtpd_milters")
    if shipped != SHIPPED_SOCKET:
        raise PostfixError(
            f"{path}: smtpd_milters is {shipped!r}, not {SHIPPED_SOCKET!r}: the test "
            "Postfix replaces exactly that value by the test milter's socket"
        )
    params["smtpd_milters"] = milter
    return params


def _decode(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


def _run(argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


class PostfixInstance:
    """A private Postfix listening on 127.0.0.1 with a plain and a SASL smtpd port.

    ``milter`` is a Postfix milter spec (``unix:/path/sock`` or ``inet:127.0.0.1:PORT``) or
    None; with one, the milter settings are the shipped sample's (module docstring).
    ``message_size_limit`` and ``milter_content_timeout`` None: the sample's (without a
    milter, Postfix's defaults). Call :meth:`start`, then :meth:`cleanup` (the fixtures do);
    :meth:`stop` is safe to call at any time, also after a failed start.

    After start: :attr:`port` (plain smtpd) and :attr:`sasl_port` (smtpd offering AUTH
    PLAIN/LOGIN, users ``sasl_users``, default alice/secret). Both relay for 127.0.0.0/8
    anyway, so SASL matters for what the milter sees ({auth_authen}), not for relaying.
    Recipients outside ``domains`` get 550 at RCPT (default_transport is error:).
    """

    def __init__(
        self,
        milter: str | None = None,
        *,
        base: Path | None = None,
        domains: Sequence[str] = DEFAULT_DOMAINS,
        sasl_users: Mapping[str, str] | None = None,
        message_size_limit: int | None = None,
        milter_connect_timeout: str = "10s",
        milter_command_timeout: str = "30s",
        milter_content_timeout: str | None = None,
        extra_main_cf: Mapping[str, str] | None = None,
        vmail_uid: int = 65534,
        vmail_gid: int = 65534,
    ) -> None:
        self._own_base = base is None
        # mkdtemp makes 0700 dirs; Postfix daemons run as `postfix` and virtual(8) as
        # vmail_uid, so every level down to the queue and the Maildirs must be traversable.
        self.base = Path(base or tempfile.mkdtemp(prefix="fxm-postfix-"))
        self.base.chmod(0o755)
        self.config_dir = self.base / "etc"
        self.queue_dir = self.base / "spool"
        self.data_dir = self.base / "data"
        self.mail_dir = self.base / "mail"
        self.log_dir = self.base / "log"
        self.maillog = self.log_dir / "maillog"
        self.sasl_db = self.config_dir / "sasl" / "sasldb2"
        self.domains = tuple(d.lower() for d in domains)
        self.sasl_users = dict(sasl_users if sasl_users is not None else {"alice": "secret"})
        self.milter = milter
        self.message_size_limit = message_size_limit
        self.milter_timeouts = (
            milter_connect_timeout,
            milter_command_timeout,
            milter_content_timeout,
        )
        self.extra_main_cf = dict(extra_main_cf or {})
        self.vmail_uid = vmail_uid
        self.vmail_gid = vmail_gid
        self.host = "127.0.0.1"
        self.port = 0
        self.sasl_port = 0
        self._running = False

    # ----------------------------------------------------------------- configuration

    def main_cf(self) -> dict[str, str]:
        """The main.cf parameters this instance is (or will be) started with."""
        connect_t, command_t, content_t = self.milter_timeouts
        cf: dict[str, str] = {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            # No syslog on these machines: without maillog_file + postlog service,
            # `postfix start` exits 1 and says nothing.
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.log_dir),
            "myhostname": "mx.faxmail.test",
            "mydomain": "faxmail.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            # No reverse DNS for 127.0.0.1 (the client name is "unknown"); there is no
            # network, and a hanging resolver would slow every connection.
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "smtpd_relay_restrictions": (
                "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
            ),
            "virtual_mailbox_domains": " ".join(self.domains),
            "virtual_mailbox_base": str(self.mail_dir),
            # A regexp map without $N: each whole domain maps to its Maildir ("dir/").
            "virtual_mailbox_maps": f"regexp:{self.config_dir / 'vmailbox.regexp'}",
            "virtual_uid_maps": f"static:{self.vmail_uid}",
            "virtual_gid_maps": f"static:{self.vmail_gid}",
            "virtual_minimum_uid": "1",
            # Postfix refuses to start if a mailbox limit is below message_size_limit.
            "virtual_mailbox_limit": "0",
            "mailbox_size_limit": "0",
            # Anything not for a test domain bounces at once instead of waiting for DNS.
            "default_transport": "error:5.1.2 test Postfix delivers only to test domains",
            "relay_transport": "error:5.1.2 test Postfix delivers only to test domains",
            # Keep retries short so deferred mail does not outlive a test.
            "queue_run_delay": "2s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "10s",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            # SASL: the server side is configured per service in master.cf (-o ...).
            "cyrus_sasl_config_path": str(self.config_dir / "sasl"),
            "smtpd_sasl_local_domain": SASL_REALM,
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_tls_security_level": "none",
            "milter_connect_timeout": connect_t,
            "milter_command_timeout": command_t,
        }
        if self.milter:
            cf.update(shipped_milter_settings(self.milter))
        else:
            cf.update(smtpd_milters="", non_smtpd_milters="")
        if self.message_size_limit is not None:
            cf["message_size_limit"] = str(self.message_size_limit)
        if content_t is not None:
            cf["milter_content_timeout"] = content_t
        cf.update(self.extra_main_cf)
        return cf

    def _master_cf(self) -> str:
        # chroot = n everywhere: the instance has no chroot jail set up.
        rows = [
            f"{self.host}:{self.port} inet n - n - - smtpd",
            f"{self.host}:{self.sasl_port} inet n - n - - smtpd",
            "  -o smtpd_sasl_auth_enable=yes",
            "  -o syslog_name=postfix/submission",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "local unix - n n - - local",
            "virtual unix - n n - - virtual",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        return "\n".join(rows) + "\n"

    def _write_config(self) -> None:
        cf = self.main_cf()
        text = "".join(f"{k} = {v}\n" for k, v in cf.items())
        (self.config_dir / "main.cf").write_text(text)
        (self.config_dir / "master.cf").write_text(self._master_cf())
        maps = "".join(f"/@{re.escape(d)}$/ {d}/\n" for d in self.domains)
        (self.config_dir / "vmailbox.regexp").write_text(maps)
        # Postfix commands wait (polling every 0.3 s, ~2 s in all) until main.cf is a couple
        # of seconds old, in case an editor is still writing it: backdate our files.
        past = time.time() - 60
        for name in ("main.cf", "master.cf", "vmailbox.regexp"):
            os.utime(self.config_dir / name, (past, past))

    def _setup_sasl(self) -> None:
        sasl_dir = self.config_dir / "sasl"
        sasl_dir.mkdir(exist_ok=True)
        (sasl_dir / "smtpd.conf").write_text(
            "pwcheck_method: auxprop\n"
            "auxprop_plugin: sasldb\n"
            "mech_list: PLAIN LOGIN\n"
            f"sasldb_path: {self.sasl_db}\n"
        )
        for user, password in self.sasl_users.items():
            self.add_sasl_user(user, password)

    def add_sasl_user(self, user: str, password: str) -> None:
        """Create or update a SASL user (takes effect for new SMTP sessions at once)."""
        proc = subprocess.run(
            ["saslpasswd2", "-f", str(self.sasl_db), "-p", "-c", "-u", SASL_REALM, user],
            input=password,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise PostfixError(f"saslpasswd2 failed: {proc.stdout}{proc.stderr}")
        # smtpd runs as `postfix` and must read the database.
        shutil.chown(self.sasl_db, "root", "postfix")
        self.sasl_db.chmod(0o640)
        self.sasl_users[user] = password

    def _prepare(self) -> None:
        for d in (self.config_dir, self.queue_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        self.data_dir.mkdir(exist_ok=True)
        shutil.chown(self.data_dir, "postfix", "postfix")
        self.mail_dir.mkdir(exist_ok=True)
        os.chown(self.mail_dir, self.vmail_uid, self.vmail_gid)
        for domain in self.domains:
            self._make_maildir(self.mail_dir / domain)
        self.port = free_port(self.host)
        self.sasl_port = free_port(self.host)
        while self.sasl_port == self.port:
            self.sasl_port = free_port(self.host)
        self._write_config()
        self._setup_sasl()

    def _make_maildir(self, path: Path) -> None:
        for sub in ("", "new", "cur", "tmp"):
            p = path / sub
            p.mkdir(parents=True, exist_ok=True)
            os.chown(p, self.vmail_uid, self.vmail_gid)
            p.chmod(0o700)

    # ----------------------------------------------------------------- lifecycle

    def _postfix(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return _run(["postfix", "-c", str(self.config_dir), *args], timeout=timeout)

    def diagnose(self) -> str:
        """Output of ``postfix check`` under a pseudo-TTY.

        Postfix prints its fatal errors to the terminal only when stderr is a TTY (otherwise
        just to the log, which may not exist yet), so `script` provides one.
        """
        cmd = f"postfix -c {self.config_dir} check"
        proc = _run(["script", "-qec", cmd, "/dev/null"])
        return (proc.stdout + proc.stderr).replace("\r\n", "\n").strip()

    def start(self, timeout: float = 30) -> None:
        """Write the configuration and start Postfix; raise PostfixError with diagnostics."""
        if os.geteuid() != 0:
            raise PostfixError("a private Postfix instance needs root")
        try:
            for attempt in range(3):
                self._prepare()  # picks fresh ports each time
                log_mark = len(self.log())
                proc = self._postfix("start", timeout=timeout)
                if proc.returncode == 0:
                    break
                # Another process may have taken a port between free_port() and bind().
                if "Address already in use" in self.log()[log_mark:] and attempt < 2:
                    continue
                raise PostfixError(
                    f"postfix start failed (exit {proc.returncode}):\n"
                    f"{proc.stdout}{proc.stderr}\n"
                    f"--- postfix check (with a TTY):\n{self.diagnose()}\n"
                    f"--- maillog:\n{self.log()}"
                )
            # `postfix start` runs `master -w`, which returns only after master has bound
            # every listener: no need to probe the ports (that would only add log noise).
            self._running = True
        except BaseException:
            self.stop()
            raise

    def _master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = 10) -> None:
        """Stop Postfix and kill whatever is left of it; idempotent, also after a failed
        start. Keeps the directory (see :meth:`cleanup`)."""
        pid = self._master_pid()
        if pid is not None:
            # Signal the master ourselves: `postfix stop` polls with 1 s sleeps.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.02)
            # The master runs in its own session (pgid == pid); its children share the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                (self.queue_dir / "pid" / "master.pid").unlink()
        self._running = False

    def cleanup(self) -> None:
        """Stop and remove the instance directory (if this object created it)."""
        self.stop()
        if self._own_base and os.environ.get("FAXMAIL_TEST_KEEP") != "1":
            shutil.rmtree(self.base, ignore_errors=True)

    def reload(self) -> None:
        """Re-read main.cf/master.cf; new SMTP sessions use the new settings."""
        proc = self._postfix("reload")
        if proc.returncode != 0:
            raise PostfixError(f"postfix reload failed:\n{proc.stdout}{proc.stderr}")
        # smtpd processes still idle from before finish their current session only; a short
        # pause lets master replace them before the next test connection.
        time.sleep(0.3)

    def configure(self, params: Mapping[str, str], *, reload: bool = True) -> None:
        """Change main.cf parameters (e.g. ``{"smtpd_milters": spec}``) and reload."""
        self.extra_main_cf.update(params)
        if "smtpd_milters" in params:
            self.milter = params["smtpd_milters"] or None
        self._write_config()
        if reload and self._running:
            self.reload()

    def set_milter(self, milter: str | None) -> None:
        """Switch to another milter spec (or none) and reload."""
        self.configure({"smtpd_milters": milter or ""})

    # ----------------------------------------------------------------- SMTP client

    def send(
        self,
        mail_from: str,
        rcpts: Iterable[str],
        message: bytes,
        *,
        sasl: tuple[str, str] | None = None,
        port: int | None = None,
        mail_options: Sequence[str] = (),
        timeout: float = 120,
    ) -> SendResult:
        """Run one SMTP transaction step by step and return every reply.

        With ``sasl=(user, password)`` it connects to the SASL port and authenticates with
        AUTH PLAIN first. Refusals do not raise: they are in the result. DATA is sent only
        if at least one recipient was accepted.
        """
        if port is None:
            port = self.sasl_port if sasl else self.port
        smtp = smtplib.SMTP(self.host, port, local_hostname="client.faxmail.test", timeout=timeout)
        result = SendResult(mail=DISCONNECTED)
        code: int
        text: bytes | str  # smtplib's exceptions carry either
        try:
            smtp.ehlo()
            if sasl is not None:
                smtp.user, smtp.password = sasl
                try:
                    code, text = smtp.auth("PLAIN", smtp.auth_plain)
                except smtplib.SMTPAuthenticationError as e:
                    code, text = e.smtp_code, e.smtp_error
                result.auth = Reply(code, _decode(text))
                if code != 235:
                    return result
            code, text = smtp.mail(mail_from, list(mail_options))
            result.mail = Reply(code, _decode(text))
            if code >= 400:
                return result
            for rcpt in rcpts:
                code, text = smtp.rcpt(rcpt)
                result.rcpts[rcpt] = Reply(code, _decode(text))
            if not result.accepted:
                return result
            try:
                code, text = smtp.data(message)
            except smtplib.SMTPDataError as e:  # DATA itself refused (no 354)
                code, text = e.smtp_code, e.smtp_error
            result.data = Reply(code, _decode(text))
        except smtplib.SMTPServerDisconnected:
            if result.rcpts and result.data is None and result.accepted:
                result.data = DISCONNECTED
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()
        return result

    # ----------------------------------------------------------------- results

    def _domain_dir(self, address: str) -> Path:
        domain = address.rsplit("@", 1)[-1].lower()
        if domain not in self.domains:
            raise ValueError(f"{address}: not a test domain ({', '.join(self.domains)})")
        return self.mail_dir / domain

    def messages(self, address: str) -> list[bytes]:
        """Messages delivered so far to ``address`` (oldest first), as stored (LF endings)."""
        new = self._domain_dir(address) / "new"
        want = address.lower()
        out: list[tuple[float, str, bytes]] = []
        parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
        for entry in os.scandir(new):
            try:
                raw = Path(entry.path).read_bytes()
                mtime = entry.stat().st_mtime
            except FileNotFoundError:  # moved by another reader
                continue
            # virtual(8) prepends exactly one Delivered-To per copy, above all other headers.
            delivered_to = parser.parsebytes(raw).get("Delivered-To", "")
            if str(delivered_to).strip().lower() == want:
                out.append((mtime, entry.name, raw))
        out.sort()
        return [raw for _, _, raw in out]

    def wait_for_delivery(self, address: str, count: int = 1, timeout: float = 30) -> list[bytes]:
        """Wait until at least ``count`` messages reached ``address``; return all of them."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(address)
            if len(msgs) >= count:
                return msgs
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(msgs)} of {count} message(s) for {address} after {timeout}s\n"
                    f"--- maillog (tail):\n{self.log()[-4000:]}"
                )
            time.sleep(0.05)

    def clear_mailboxes(self) -> None:
        """Remove every delivered message (for reusing one instance across tests)."""
        for d in self.domains:
            for sub in ("new", "cur", "tmp"):
                for entry in os.scandir(self.mail_dir / d / sub):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def queue_files(self) -> list[Path]:
        """Queue files of messages Postfix still holds (not yet delivered or bounced)."""
        out: list[Path] = []
        for sub in _QUEUE_DIRS:
            root = self.queue_dir / sub
            if root.is_dir():
                out.extend(p for p in root.rglob("*") if p.is_file())
        return out

    def wait_for_empty_queue(self, timeout: float = 30) -> None:
        """Wait until no message is queued (everything delivered, bounced or discarded)."""
        deadline = time.monotonic() + timeout
        while self.queue_files():
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"queue not empty after {timeout}s: {self.queue_files()}\n"
                    f"--- maillog (tail):\n{self.log()[-4000:]}"
                )
            time.sleep(0.05)

    def log(self) -> str:
        """The whole maillog so far ('' before the first line is written)."""
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 10) -> re.Match[str]:
        """Wait for a regex to match in the maillog (postlogd writes asynchronously)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{pattern!r} not in maillog after {timeout}s:\n{self.log()}")
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
