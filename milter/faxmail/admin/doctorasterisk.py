"""`faxmail doctor`: Asterisk on this host, asked through its control socket (what
``asterisk -rx`` does): the fax modules loaded, the contexts the policy names, and the
dialplan's faxmail-notify."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from faxmail.admin.doctorchecks import Finding, Install

#: Without these a call file is never read, a fax never sent, notify never told.
MODULES = ("pbx_spool.so", "res_fax.so", "res_fax_spandsp.so", "app_system.so", "func_base64.so")


def asterisk_command(ctl: Path, command: str, timeout: float = 10) -> str:
    """One CLI command over the control socket. Asterisk greets with one line, runs a command
    sent as ``cli quit after <command>`` NUL-terminated, and closes when it is done."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(ctl))
        s.recv(4096)  # "host/pid/version"
        s.sendall(f"cli quit after {command}".encode() + b"\0")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def parse_globals(text: str) -> dict[str, str]:
    """``dialplan show globals`` output as a dict."""
    found = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and re.fullmatch(r"[A-Za-z0-9_]+", name):
            found[name] = value
    return found


def check_asterisk(install: Install) -> Iterator[Finding]:
    assert install.settings is not None
    ctl = install.asterisk_ctl
    try:
        modules = asterisk_command(ctl, "module show like .so")
    except OSError as exc:
        yield Finding(
            "asterisk",
            False,
            f"no answer on {ctl} ({exc.strerror or exc}): Asterisk must run on this host "
            "(call files, notify); start it, or pass --asterisk-ctl PATH",
        )
        return
    running = {m.group(1) for m in re.finditer(r"^(\S+\.so)\s.*\bRunning\b", modules, re.M)}
    missing = [m for m in MODULES if m not in running]
    if missing:
        yield Finding(
            "asterisk",
            False,
            f"modules not running: {', '.join(missing)}: load them in modules.conf "
            "(asterisk/README.md section 1)",
        )
    else:
        yield Finding("asterisk", True, f"{', '.join(MODULES)} are running")
    yield from _dialplan(install, ctl)


def _dialplan(install: Install, ctl: Path) -> Iterator[Finding]:
    assert install.settings is not None
    fax = install.policy.fax if install.policy else None
    context, extension = (fax.context, fax.extension) if fax else ("faxmail-send", "send")
    shown = asterisk_command(ctl, f"dialplan show {extension}@{context}")
    if f"'{extension}' =>" not in shown:
        yield Finding(
            "dialplan",
            False,
            f"no extension {extension} in context {context} (policy fax.context/extension): "
            "#include faxmail's extensions.conf (asterisk/README.md section 3), then "
            "dialplan reload",
        )
        return
    if "${FAXMAIL_NOTIFY}" not in shown:
        yield Finding(
            "dialplan",
            False,
            f"{extension}@{context} never calls faxmail-notify: senders would get no result "
            "mail; use the shipped [faxmail-send]",
        )
        return
    variables = parse_globals(asterisk_command(ctl, "dialplan show globals"))
    notify = variables.get("FAXMAIL_NOTIFY", "")
    settings = variables.get("FAXMAIL_SETTINGS", "")
    if not notify or not os.access(notify, os.X_OK):
        yield Finding(
            "dialplan",
            False,
            f"FAXMAIL_NOTIFY is {notify or 'unset'}, not an executable here: set "
            "FAXMAIL_NOTIFY=/usr/local/bin/faxmail-notify in faxmail-globals.conf",
        )
        return
    if Path(settings).resolve() != install.settings_path.resolve():
        yield Finding(
            "dialplan",
            False,
            f"FAXMAIL_SETTINGS is {settings or 'unset'}, but these settings are "
            f"{install.settings_path}: notify would read other ones; set "
            f"FAXMAIL_SETTINGS={install.settings_path} in faxmail-globals.conf",
        )
        return
    yield Finding(
        "dialplan",
        True,
        f"{extension}@{context} faxes and reports to {notify} --settings={settings}",
    )
