"""What every subcommand works with: settings, policy, job store, notify spool — loaded once."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
from dataclasses import dataclass
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path

from faxmail.core.mailfrom import MailFrom, mail_from
from faxmail.core.policy import Policy
from faxmail.core.settings import Settings, load_settings
from faxmail.core.yamlfile import load_yaml
from faxmail.notify.messages import AddressError
from faxmail.notify.outbox import NotifySpool
from faxmail.store.choose import open_store
from faxmail.store.interface import NotifyStore

DEFAULT_SETTINGS = Path("/etc/faxmail/settings.yaml")

log = logging.getLogger("faxmail_notify")


@dataclass
class Context:
    settings: Settings
    policy: Policy
    store: NotifyStore
    spool: NotifySpool

    @cached_property
    def mail_from(self) -> MailFrom:
        """Who our mails come from under this run's policy (read when a mail is handed over,
        so an admin's later notify.from_address reaches mails spooled before it)."""
        return mail_from(self.policy, socket.getfqdn())

    @property
    def from_header(self) -> str:
        """From: of our mails, "Name <address>" or an address; AddressError (naming the
        policy key) when there is none."""
        if self.mail_from.header is None:
            raise AddressError(self.mail_from.describe())
        return self.mail_from.header

    @property
    def envelope_sender(self) -> str:
        """The envelope sender of our mails; AddressError as :attr:`from_header`."""
        return parseaddr(self.from_header)[1]

    @property
    def spooled_sender(self) -> str:
        """The sender written into a new spool entry, for older versions reading it ("" when
        there is none yet); this version takes ours at hand-over time."""
        return self.mail_from.envelope or ""

    def close(self) -> None:
        self.store.close()


def load_context(settings_path: Path | None) -> Context:
    """Raises ConfigError (exit 78) for bad settings or policy, OSError for unusable paths."""
    settings = read_settings(settings_path)
    policy = Policy() if settings.policy is None else load_yaml(settings.policy, Policy)
    setup_logging(settings)
    store = open_store(settings)
    context = Context(settings, policy, store, NotifySpool(settings.notify_spool))
    if context.mail_from.problem is not None:
        # Events are still recorded and mails spooled (retry delivers them once it is set).
        log.error("%s", context.mail_from.describe())
    return context


def read_settings(settings_path: Path | None) -> Settings:
    """The settings `--settings` names, else /etc/faxmail/settings.yaml, else the defaults."""
    if settings_path is None and DEFAULT_SETTINGS.exists():
        settings_path = DEFAULT_SETTINGS
    return load_settings(settings_path)


def setup_logging(settings: Settings) -> None:
    """A log the admin can find: Asterisk discards what System() commands print."""
    handlers: list[logging.Handler] = []
    fmt = "%(asctime)s faxmail-notify[%(process)d] %(levelname)s %(name)s: %(message)s"
    if settings.notify.log_file is not None:
        handlers.append(logging.FileHandler(settings.notify.log_file))
    else:
        if os.path.exists("/dev/log"):
            syslog = logging.handlers.SysLogHandler(
                "/dev/log", facility=logging.handlers.SysLogHandler.LOG_MAIL
            )
            syslog.setFormatter(logging.Formatter("faxmail-notify[%(process)d]: %(message)s"))
            handlers.append(syslog)
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        if handler.formatter is None:
            handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = handlers
    # Our own loggers at the configured level; libraries (Pillow, img2pdf, pikepdf) debug-log
    # every TIFF tag, so they get warnings only.
    root.setLevel(logging.WARNING)
    for name in ("faxmail", "faxmail_notify"):
        logging.getLogger(name).setLevel(settings.log_level.upper())
