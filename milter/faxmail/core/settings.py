"""The daemon's own settings (read once at start). Every key has an embedded default."""

from __future__ import annotations

import socket as _socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from faxmail.core.asteriskhosts import AsteriskHosts
from faxmail.core.yamlfile import load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dns(_Strict):
    nameservers: tuple[str, ...] = ()  # empty: those of /etc/resolv.conf
    port: int = Field(default=53, ge=1, le=65535)
    timeout: float = Field(default=5.0, gt=0, le=60)


class Asterisk(_Strict):
    spool_dir: Path = Path("/var/spool/asterisk")  # outgoing/ is under it
    fax_dir: Path | None = None  # TIFFs of queued faxes; default <spool_dir>/fax
    user: str | None = "asterisk"  # call files must belong to Asterisk's user; None: keep ours
    # The folders under spool_dir and the names of the files in them: asterisk/spool.py.


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Mail(_Strict):
    """How faxmail-notify hands its mails over (result mails, received faxes).

    The default is the local sendmail(1) command, not SMTP to 127.0.0.1:25: Postfix's sendmail
    drops the mail into its maildrop queue even while the master, smtpd or the milter is down
    (with non_smtpd_milters set, Postfix retries it from there by itself), and needs no port,
    TLS or password; SMTP to port 25 would be refused with 451 while the milter is stuck and
    leave the retrying to notify. Whatever the transport, notify keeps a mail
    in its own spool until the hand-over succeeded. Use `smtp` for a relay (e.g. a provider's
    submission port with STARTTLS and AUTH) or where no local MTA is installed.
    """

    transport: Literal["sendmail", "smtp"] = "sendmail"
    sendmail: Path = Path("/usr/sbin/sendmail")  # run as: sendmail -i -f FROM -- RCPT...
    host: str = Field(default="127.0.0.1", pattern=r"^[A-Za-z0-9.:-]{1,253}$")
    port: int | None = Field(default=None, ge=1, le=65535)  # None: 465 with tls, else 25
    security: Literal["none", "starttls", "tls"] = "none"  # tls: implicit TLS (smtps)
    username: str | None = None  # AUTH only when set
    password_file: Path | None = None  # the password: first line of this file, not the YAML
    ca_file: Path | None = None  # None: the system's CAs; the host name is always checked
    timeout: float = Field(default=30, gt=0, le=600)  # seconds per SMTP step
    helo: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")  # None: FQDN

    @property
    def smtp_port(self) -> int:
        return self.port or (465 if self.security == "tls" else 25)

    @model_validator(mode="after")
    def _consistent(self) -> Mail:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        if self.username and self.security == "none" and self.host not in _LOOPBACK:
            raise ValueError(
                f"AUTH to {self.host} without TLS would send the password in clear text: "
                "set security: starttls or tls"
            )
        return self


class Notify(_Strict):
    """faxmail-notify's own paths (it runs as Asterisk's user, from System())."""

    spool_dir: Path | None = None  # mails not yet handed over; None: <state_dir>/notify-spool
    # Where the dialplan's ReceiveFAX() writes (its FAXMAIL_INBOX global): notify only ever
    # reads and deletes received TIFFs in here, by file name.
    inbox_dir: Path = Path("/var/spool/asterisk/fax-in")
    log_file: Path | None = None  # None: syslog (/dev/log) and standard error


# What `faxmail web passwd` prints: scrypt:N:r:p$salt$key (base64).
LOGIN_HASH = (
    r"^scrypt:[0-9]{1,8}:[0-9]{1,3}:[0-9]{1,3}"  # N (cost), r, p
    r"\$[A-Za-z0-9+/=]{8,128}\$[A-Za-z0-9+/=]{16,256}$"  # $salt$key
)
WEB_USER = r"^[A-Za-z0-9._@-]{1,64}$"  # no ":": HTTP Basic ends the name at the first one
WebUser = Annotated[str, Field(pattern=WEB_USER)]
WebPasswordHash = Annotated[str, Field(pattern=LOGIN_HASH)]


class Web(_Strict):
    """`faxmail web`, the read-only status page (faxmail/web/)."""

    bind: str = Field(default="127.0.0.1", pattern=r"^[A-Za-z0-9.:-]{1,253}$")  # others: a proxy
    port: int = Field(default=8895, ge=1, le=65535)
    users: dict[WebUser, WebPasswordHash] = {}  # login → hash; none: the page does not start
    recent_jobs: int = Field(default=50, ge=1, le=500)
    chart_days: int = Field(default=14, ge=1, le=92)


class Store(_Strict):
    """Where the job store is. Without `url`: the SQLite file <state_dir>/faxmail.sqlite, for
    one host. With a PostgreSQL URL (postgresql://user@db.example.jp/faxmail): one database
    shared by several MX and Asterisk hosts; its tables come from `faxmail store migrate`.
    Keep the password out of the YAML: libpq's ~/.pgpass (PGPASSFILE), or `password_file`."""

    url: str | None = Field(default=None, pattern=r"^postgres(ql)?://")
    password_file: Path | None = None  # the password: first line of this file

    @model_validator(mode="after")
    def _password_needs_url(self) -> Store:
        if self.password_file is not None and self.url is None:
            raise ValueError("password_file is for a PostgreSQL store: set url too")
        return self


class Settings(_Strict):
    socket: str = "inet:8894@127.0.0.1"
    socket_group: str | None = "postfix"  # a unix socket is made 0660 with this group
    policy: Path | None = None  # None: the embedded default policy (allows nobody)
    state_dir: Path = Path("faxmail-state")  # job store, work files
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: Path | None = None  # None: standard error (journald under systemd)
    authserv_id: str = Field(default_factory=_socket.getfqdn)
    dns: Dns = Dns()
    asterisk: Asterisk = Asterisk()
    asterisk_hosts: AsteriskHosts = {}  # remote Asterisk servers by name (core/asteriskhosts.py)
    render_slots: int | None = Field(default=None, ge=1)  # None: one per CPU
    milter_timeout: int = Field(default=600, ge=10)  # seconds libmilter waits on Postfix
    mail: Mail = Mail()
    notify: Notify = Notify()
    web: Web = Web()
    store: Store = Store()

    @property
    def notify_spool(self) -> Path:
        return self.notify.spool_dir or self.state_dir / "notify-spool"

    @field_validator("socket")
    @classmethod
    def _socket_spec(cls, spec: str) -> str:
        if not (spec.startswith(("unix:", "local:", "inet:", "inet6:"))):
            raise ValueError(
                "socket must look like unix:/run/faxmail/milter.sock or inet:PORT@HOST"
            )
        return spec


def load_settings(path: Path | None) -> Settings:
    return Settings() if path is None else load_yaml(path, Settings)
