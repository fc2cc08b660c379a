"""What every subcommand works with: settings, policy, job store, notify spool — loaded once."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from faxmail.core.policy import Policy
from faxmail.core.settings import Settings, load_settings
from faxmail.core.yamlfile import load_yaml
from faxmail.notify.outbox import NotifySpool
from faxmail.store.choose import open_store
from faxmail.store.interface import NotifyStore

DEFAULT_SETTINGS = Path("/etc/faxmail/settings.yaml")


@dataclass
class Context:
    settings: Settings
    policy: Policy
    store: NotifyStore
    spool: NotifySpool

    @property
    def from_header(self) -> str:
        """From: of our mails, "Name <address>" or an address."""
        return self.policy.notify.from_address or f"faxmail@{socket.getfqdn()}"

    @property
    def envelope_sender(self) -> str:
        return parseaddr(self.from_header)[1]

    def close(self) -> None:
        self.store.close()


def load_context(settings_path: Path | None) -> Context:
    """Raises ConfigError (exit 78) for bad settings or policy, OSError for unusable paths."""
    settings = read_settings(settings_path)
    policy = Policy() if settings.policy is None else load_yaml(settings.policy, Policy)
    setup_logging(settings)
    store = open_store(settings)
    return Context(settings, policy, store, NotifySpool(settings.notify_spool))


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
