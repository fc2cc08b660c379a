"""`faxmail doctor`: check an installation the way an admin would, one line per finding."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path

from faxmail.admin.doctorasterisk import check_asterisk
from faxmail.admin.doctorchecks import (
    Finding,
    Install,
    check_dns,
    check_notify,
    check_policy,
    check_settings,
    check_spool,
    check_state,
    check_tools,
)
from faxmail.admin.doctorpostfix import check_socket
from faxmail.admin.doctorstore import check_store

Check = Callable[[Install], Iterator[Finding]]

#: In the order a fax needs them; `settings` first: every other check reads the settings.
CHECKS: dict[str, Check] = {
    "settings": check_settings,
    "policy": check_policy,
    "socket": check_socket,
    "spool": check_spool,
    "state": check_state,
    "store": check_store,
    "tools": check_tools,
    "dns": check_dns,
    "notify": check_notify,
    "asterisk": check_asterisk,
}

HELP = """\
Check this installation end to end and say what to fix, one line per finding:

  settings  the settings file is valid (every key known, every value in range)
  policy    the policy file is valid and lets someone fax
  socket    the milter's socket, and Postfix's view of it: smtpd_milters and
            non_smtpd_milters as postconf reports them, resolved inside the chroot that
            master.cf gives smtpd and cleanup, connected to as Postfix's user; the
            socket's owner and mode (group socket_group, 0660)
  spool     outgoing/, faxmail-staging/, fax/ and the inbox exist and the daemon's user
            (asterisk.user) can write them; staging is on outgoing's filesystem
  state     the state directory and the job store belong to that user and are private
  store     with store.url: PostgreSQL answers that user (its password file too) and
            the schema is this version's (else: run faxmail store migrate)
  tools     gs, qpdf, tiffinfo, tiffcp and the IPA fonts are installed
  dns       the resolver in the settings answers DKIM key lookups
  notify    result mails have a valid From: and a way out (sendmail or the SMTP relay)
  asterisk  Asterisk answers on its control socket, its fax modules run, the policy's
            context exists and calls faxmail-notify with these settings

Exit status 0 only when every check passed: a fax could go through. Run it as root (it
checks as the users Postfix and the daemon run as) after installing and after each change.
"""


def add_doctor_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="check the installation end to end and say what to fix",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: faxmail doctor --settings /etc/faxmail/settings.yaml",
    )
    doctor.add_argument(
        "--settings",
        type=Path,
        default=Path("/etc/faxmail/settings.yaml"),
        metavar="FILE",
        help="the daemon's settings (default: %(default)s)",
    )
    doctor.add_argument(
        "--check",
        action="append",
        choices=list(CHECKS),
        metavar="NAME",
        help="run only this check (repeatable; settings always runs): " + ", ".join(CHECKS),
    )
    doctor.add_argument(
        "--postfix-config",
        type=Path,
        metavar="DIR",
        help="Postfix's config_directory (postconf -c; default: Postfix's own)",
    )
    doctor.add_argument(
        "--asterisk-ctl",
        type=Path,
        default=Path("/var/run/asterisk/asterisk.ctl"),
        metavar="PATH",
        help="Asterisk's control socket (default: %(default)s)",
    )
    doctor.set_defaults(func=run_doctor)


def findings(install: Install, selected: list[str] | None) -> Iterator[Finding]:
    """Every finding of the selected checks; after an invalid settings file, nothing more."""
    for name, check in CHECKS.items():
        if name != "settings" and selected and name not in selected:
            continue
        yield from check(install)
        if name == "settings" and install.settings is None:
            return


def run_doctor(args: argparse.Namespace) -> int:
    install = Install(
        settings_path=args.settings,
        postfix_config=args.postfix_config,
        asterisk_ctl=args.asterisk_ctl,
    )
    ok = True
    for finding in findings(install, args.check):
        print(finding.line(), flush=True)
        ok = ok and finding.ok
    return 0 if ok else 1
