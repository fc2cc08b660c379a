"""What `faxmail doctor` checks on this host, besides Postfix and Asterisk: the settings and
policy, the folders and their owners, the job store, the helper programs, DNS and notify's
way out. Each check returns findings; a failing one says how to fix it."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import sqlite3
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from faxmail.asterisk.spool import Spool
from faxmail.core.mailfrom import KEY as FROM_KEY
from faxmail.core.mailfrom import mail_from
from faxmail.core.policy import Policy
from faxmail.core.settings import Settings, load_settings
from faxmail.core.yamlfile import ConfigError, load_yaml


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    text: str  # what was found; for a failure also how to fix it

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.check}: {self.text}"


@dataclass
class Install:
    """What the checks look at; built once from the command line."""

    settings_path: Path
    settings: Settings | None = None
    policy: Policy | None = None
    postfix_config: Path | None = None  # postconf -c; None: Postfix's default
    asterisk_ctl: Path = Path("/var/run/asterisk/asterisk.ctl")
    notes: list[str] = field(default_factory=list)

    @property
    def daemon_user(self) -> str | None:
        """Whom the milter and notify run as (the unit's User=, Asterisk's runuser)."""
        return self.settings.asterisk.user if self.settings else None


def run_as(
    user: str | None, action: Callable[[], str | None], chroot: Path | None = None
) -> str | None:
    """Run ``action`` in a child as ``user`` (its groups too), optionally chrooted; return
    its complaint or None. Needs root unless ``user`` is None or already us."""
    if user is None or (os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name == user):
        return action()
    if os.geteuid() != 0:
        return f"only root can check this as user {user}: run faxmail doctor as root"
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return f"user {user} does not exist"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        try:
            os.initgroups(user, entry.pw_gid)  # from this host's /etc/group, not the chroot's
            os.setgid(entry.pw_gid)
            if chroot is not None:
                os.chroot(chroot)
                os.chdir("/")
            os.setuid(entry.pw_uid)
            complaint = action() or ""
        except BaseException as exc:  # noqa: BLE001 - report whatever it was to the parent
            complaint = f"{type(exc).__name__}: {exc}"
        os.write(write, complaint.encode()[:4000])
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode(errors="replace")
    os.waitpid(pid, 0)
    return answer or None


def _config_failures(check: str, exc: ConfigError, fix: str) -> Iterator[Finding]:
    for problem in exc.problems:
        yield Finding(check, False, f"{exc.source}: {problem}: {fix}")


def check_settings(install: Install) -> Iterator[Finding]:
    path = install.settings_path
    if not path.is_file():
        yield Finding(
            "settings",
            False,
            f"{path} does not exist: copy the example from /usr/local/share/faxmail/etc/ "
            "(scripts/install does) or pass --settings FILE",
        )
        return
    try:
        install.settings = load_settings(path)
    except ConfigError as exc:
        yield from _config_failures(
            "settings", exc, "fix it in the file (every key is in the README's settings table)"
        )
        return
    yield Finding("settings", True, f"{path} is valid")


def check_policy(install: Install) -> Iterator[Finding]:
    assert install.settings is not None
    path = install.settings.policy
    if path is None:
        yield Finding(
            "policy",
            False,
            "no policy file: the embedded default allows nobody to fax; set policy: "
            "/etc/faxmail/policy.yaml in the settings",
        )
        return
    try:
        policy = install.policy = load_yaml(path, Policy)
    except ConfigError as exc:
        yield from _config_failures("policy", exc, "fix it (faxmail policy check FILE)")
        return
    if not policy.fax_address.domains or not policy.senders:
        yield Finding(
            "policy",
            False,
            f"{path} names no fax domain or no sender: nobody can fax; fill in "
            "fax_address.domains and senders",
        )
        return
    yield Finding(
        "policy",
        True,
        f"{path} is valid ({len(policy.senders)} sender entries, fax domains: "
        f"{', '.join(policy.fax_address.domains)})",
    )


def _writable_folder(folder: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        if not folder.is_dir():
            return "missing"
        if not os.access(folder, os.W_OK | os.X_OK):
            return "not writable"
        return None

    return check


def check_spool(install: Install) -> Iterator[Finding]:
    assert install.settings is not None
    ast = install.settings.asterisk
    spool = Spool.from_settings(ast)
    user = install.daemon_user
    owner = user or "the daemon's user"
    # Asterisk writes outgoing_done/ beside outgoing/: the spool itself must be its user's too.
    folders = [
        ast.spool_dir,
        spool.outgoing,
        spool.staging,
        spool.faxes,
        install.settings.notify.inbox_dir,
    ]
    bad = False
    for folder in folders:
        complaint = run_as(user, _writable_folder(folder))
        if complaint:
            bad = True
            yield Finding(
                "spool",
                False,
                f"{folder} is {complaint} for {owner}: install -d -o {owner} -g {owner} "
                f"-m 0750 {folder} (scripts/install does)",
            )
    if bad:
        return
    if spool.staging.stat().st_dev != spool.outgoing.stat().st_dev:
        yield Finding(
            "spool",
            False,
            f"{spool.staging} and {spool.outgoing} are on different filesystems: the rename "
            "into outgoing/ would not be atomic; keep both under asterisk.spool_dir",
        )
        return
    yield Finding("spool", True, f"{', '.join(map(str, folders))} are writable by {owner}")


def _open_store(path: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                db.execute("SELECT count(*) FROM jobs").fetchone()
            finally:
                db.close()
        except sqlite3.Error as exc:
            return str(exc)
        return None

    return check


def check_state(install: Install) -> Iterator[Finding]:
    assert install.settings is not None
    state = install.settings.state_dir
    user = install.daemon_user
    owner = user or "the daemon's user"
    complaint = run_as(user, _writable_folder(state))
    if complaint:
        yield Finding(
            "state",
            False,
            f"{state} is {complaint} for {owner}: install -d -o {owner} -g {owner} -m 0750 {state}",
        )
        return
    if install.settings.store.url:
        yield Finding("state", True, f"{state} is ready; the job store is PostgreSQL (see store)")
        return
    store = state / "faxmail.sqlite"
    for path, mode in ((state, "0750"), (store, "0640")):
        if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o007:
            yield Finding(
                "state",
                False,
                f"{path} is open to every local user (senders, subjects and numbers): "
                f"chmod {mode} {path}",
            )
            return
    if not store.exists():
        yield Finding("state", True, f"{state} is ready; the job store is made at first start")
        return
    complaint = run_as(user, _open_store(store))
    if complaint:
        yield Finding(
            "state",
            False,
            f"the job store {store} cannot be read by {owner}: {complaint}; chown {owner} "
            "it and its -wal/-shm files",
        )
        return
    yield Finding("state", True, f"{state} and the job store {store} are private to {owner}")


_TOOLS = {
    "gs": "ghostscript",
    "qpdf": "qpdf",
    "tiffinfo": "libtiff-tools",
    "tiffcp": "libtiff-tools",
    "prlimit": "util-linux",
    "setpriv": "util-linux",
}
_FONTS = {
    Path("/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"): "fonts-ipafont-gothic",
    Path("/usr/share/fonts/opentype/ipafont-mincho/ipam.ttf"): "fonts-ipafont-mincho",
}


def check_tools(install: Install) -> Iterator[Finding]:
    missing = sorted({pkg for tool, pkg in _TOOLS.items() if shutil.which(tool) is None})
    missing += sorted({pkg for font, pkg in _FONTS.items() if not font.exists()})
    if missing:
        yield Finding(
            "tools",
            False,
            f"missing programs or fonts: apt-get install {' '.join(missing)}",
        )
        return
    yield Finding("tools", True, "gs, qpdf, tiffinfo, tiffcp and the IPA fonts are installed")


def check_dns(install: Install) -> Iterator[Finding]:
    assert install.settings is not None
    import dns.exception
    import dns.rcode
    import dns.resolver

    conf = install.settings.dns
    domains = install.policy.fax_address.domains if install.policy else ()
    name = f"_domainkey.{domains[0] if domains else 'example.com'}"
    resolver = dns.resolver.Resolver(configure=not conf.nameservers)
    if conf.nameservers:
        resolver.nameservers = list(conf.nameservers)
    resolver.port = conf.port
    resolver.lifetime = conf.timeout
    servers = ", ".join(map(str, resolver.nameservers)) or "none"
    try:
        resolver.resolve(name, "TXT", raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        pass  # an answer: the name does not exist
    except (dns.exception.DNSException, OSError) as exc:
        yield Finding(
            "dns",
            False,
            f"no answer for {name} TXT from {servers} port {conf.port} ({exc}): DKIM keys "
            "cannot be looked up (every signed fax gets 451); fix dns.nameservers in the "
            "settings or the resolver",
        )
        return
    yield Finding("dns", True, f"{servers} answers DKIM key lookups")


def check_notify(install: Install) -> Iterator[Finding]:
    assert install.settings is not None
    mail = install.settings.mail
    sender = mail_from(install.policy or Policy(), socket.getfqdn())
    if sender.problem is not None:
        yield Finding("notify", False, sender.describe())
        return
    if sender.source != FROM_KEY:
        # Works, but the admin should choose (a mailbox that can take the bounces).
        yield Finding("notify", True, f"{sender.describe()}; set notify.from_address to choose")
    if mail.transport == "sendmail":
        if not os.access(mail.sendmail, os.X_OK):
            yield Finding(
                "notify",
                False,
                f"{mail.sendmail} (mail.sendmail) is not executable: install Postfix or "
                "set mail.transport: smtp",
            )
            return
        yield Finding("notify", True, f"mails go through {mail.sendmail}")
        return
    try:
        with socket.create_connection((mail.host, mail.smtp_port), timeout=mail.timeout):
            pass
    except OSError as exc:
        yield Finding(
            "notify",
            False,
            f"cannot reach {mail.host} port {mail.smtp_port} (mail.host/port): {exc}",
        )
        return
    yield Finding("notify", True, f"mails go by SMTP to {mail.host} port {mail.smtp_port}")
