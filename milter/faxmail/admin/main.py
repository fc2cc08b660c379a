"""faxmail: the admin's command (policy and settings check, dry-run, sendfax; the job commands
are in admin/jobcommands.py, doctor in admin/doctor.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from faxmail.core.exitcodes import EX_CONFIG, EX_NOINPUT
from faxmail.core.policy import Policy
from faxmail.core.yamlfile import ConfigError, load_yaml


def _config_error(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(f"{exc.source}: {problem}", file=sys.stderr)
    return EX_CONFIG


def _policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_yaml(args.file, Policy)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 1
    print(
        f"{args.file}: OK ({len(policy.senders)} sender entries, "
        f"fax domains: {', '.join(policy.fax_address.domains) or 'none'})"
    )
    return _mail_from_check(args.file, policy)


def _mail_from_check(source: Path, policy: Policy) -> int:
    """Who our mails come from on this host: a warning when it is a fallback or missing, and
    exit 1 when faxmail-milter would refuse to start with this policy here."""
    import socket

    from faxmail.core.mailfrom import KEY, mail_from, sends_mail_without_faxing

    sender = mail_from(policy, socket.getfqdn())
    if sender.source == KEY:
        return 0
    print(f"{source}: warning: {sender.describe()}", file=sys.stderr)
    return 1 if sender.problem is not None and sends_mail_without_faxing(policy) else 0


def _settings_check(args: argparse.Namespace) -> int:
    from faxmail.core.settings import Settings

    try:
        settings = load_yaml(args.file, Settings)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 1
    print(f"{args.file}: OK (socket {settings.socket}, policy {settings.policy or 'embedded'})")
    return 0


def _dry_run(args: argparse.Namespace) -> int:
    from faxmail.admin.dryrun import run_dry

    try:
        raw = args.message.read_bytes()
    except OSError as exc:
        print(f"faxmail dry-run: {exc}", file=sys.stderr)
        return EX_NOINPUT
    try:
        verdict = run_dry(
            raw,
            settings_path=args.settings,
            policy_path=args.policy,
            mail_from=args.mail_from,
            rcpts=args.rcpt,
            sasl_user=args.sasl_user,
            client_ip=args.client_ip,
        )
    except ConfigError as exc:
        return _config_error(exc)
    if args.json:
        print(json.dumps(verdict, ensure_ascii=False, indent=2))
    else:
        for line in verdict["lines"]:
            print(line)
    return 0 if verdict["accepted"] else 1


def _sendfax(args: argparse.Namespace) -> int:
    from faxmail.admin.sendfax import send_fax
    from faxmail.core.exitcodes import EX_TEMPFAIL

    raw = sys.stdin.buffer.read()
    try:
        outcome = send_fax(
            raw,
            context=args.context,
            trunk=args.trunk,
            number=args.number,
            sender=args.sender,
            settings_path=args.settings,
        )
    except ConfigError as exc:
        return _config_error(exc)
    except Exception as exc:  # noqa: BLE001 - fail closed: pipe(8) keeps the mail and retries
        print(f"faxmail sendfax: temporary failure: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    print(outcome.message, file=sys.stderr if outcome.code else sys.stdout)
    return outcome.code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faxmail",
        description="Administer the faxmail e-mail to fax gateway.",
        epilog="The daemon itself is faxmail-milter (see faxmail-milter --help).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    policy = sub.add_parser("policy", help="work with the policy file")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_sub.add_parser(
        "check",
        help="validate a policy file; print each problem with its key path and line",
        description="Validate a policy file. Exit 0 if valid, 1 with one line per problem.",
    )
    check.add_argument("file", type=Path)
    check.set_defaults(func=_policy_check)

    settings = sub.add_parser("settings", help="work with the daemon's settings file")
    settings_sub = settings.add_subparsers(dest="settings_command", required=True, metavar="ACTION")
    settings_check = settings_sub.add_parser(
        "check",
        help="validate a settings file; print each problem with its key path and line",
        description=(
            "Validate the daemon's settings file (faxmail-milter --settings, faxmail-notify"
            " --settings). Exit 0 if valid, 1 with one line per problem. faxmail doctor checks"
            " the whole installation."
        ),
    )
    settings_check.add_argument("file", type=Path)
    settings_check.set_defaults(func=_settings_check)

    dry = sub.add_parser(
        "dry-run",
        help="run the milter's decision on a message file, without Postfix",
        description=(
            "Run the same steps the milter runs (recipient checks, DKIM, policy, extraction,"
            " rendering) on MESSAGE and print the SMTP answer Postfix would give. Nothing is"
            " queued. Exit 0 if the fax would be accepted, 1 if not."
        ),
    )
    dry.add_argument("message", type=Path, metavar="MESSAGE.eml")
    dry.add_argument("--mail-from", required=True, metavar="ADDR", help="envelope sender")
    dry.add_argument(
        "--rcpt", required=True, action="append", metavar="ADDR", help="recipient (repeatable)"
    )
    dry.add_argument("--sasl-user", metavar="USER", help="as if authenticated with SMTP AUTH")
    dry.add_argument("--client-ip", metavar="IP", help="as if the client connected from IP")
    dry.add_argument("--settings", type=Path, metavar="FILE", help="daemon settings YAML")
    dry.add_argument("--policy", type=Path, metavar="FILE", help="policy YAML (overrides settings)")
    dry.add_argument("--json", action="store_true", help="machine-readable output")
    dry.set_defaults(func=_dry_run)

    pipe = sub.add_parser(
        "sendfax",
        help="seed-compatible Postfix pipe(8) transport: fax the mail on standard input",
        description=(
            "Fax the mail read from standard input, as the original sendfax.py did from a"
            " Postfix pipe(8) transport, through the same checks as the milter (policy, DKIM,"
            " rendering, queueing). Exit codes for pipe(8): 0 queued, 75 try again later,"
            " 77 not allowed, 65 bad document or number; the reason goes to standard error."
            " Prefer the milter: it refuses before Postfix accepts the mail, so no bounce is"
            " ever sent by your server to a forged sender."
        ),
    )
    pipe.add_argument("context", help="Asterisk dialplan context for the call (fax.context)")
    pipe.add_argument("trunk", help="PJSIP endpoint to dial through: PJSIP/<number>@TRUNK")
    pipe.add_argument("number", help="the fax number (pipe(8): ${extension})")
    pipe.add_argument("--sender", metavar="ADDR", help="envelope sender (pipe(8): ${sender})")
    pipe.add_argument("--settings", type=Path, metavar="FILE", help="daemon settings YAML")
    pipe.set_defaults(func=_sendfax)

    from faxmail.admin.jobcommands import add_job_commands

    add_job_commands(sub)  # jobs, show, cancel, resend, stats
    from faxmail.admin.doctor import add_doctor_command

    add_doctor_command(sub)
    from faxmail.admin.storecommand import add_store_command

    add_store_command(sub)  # store migrate
    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: Any) -> None:
    """Commands of packages above admin/ (`faxmail web`): admin may not import them (they read
    through admin's own queries), so they register as entry points (pyproject.toml)."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group="faxmail.commands"), key=lambda e: e.name):
        entry.load()(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
