"""faxmail-notify: the command Asterisk's dialplan runs through System().

Exit codes (sysexits): 0 done, 75 spooled but not yet handed over (retried later), 64 usage,
65 an argument outside its alphabet, 66 unknown job or missing file, 73 cannot write the
spool, 78 bad settings or policy, 70 a bug (logged with a traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

from faxmail.core.exitcodes import (
    EX_CANTCREAT,
    EX_CONFIG,
    EX_DATAERR,
    EX_NOINPUT,
    EX_OK,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_USAGE,
)
from faxmail.core.settings import Settings
from faxmail.core.yamlfile import ConfigError
from faxmail.notify import args as token
from faxmail.notify.args import FaxReport, Refused
from faxmail.notify.deliver import deliver, deliver_all
from faxmail.notify.entry import Reception
from faxmail.notify.environment import Context, load_context, read_settings, setup_logging
from faxmail.notify.fetch import OutsideFaxDir, on_fetch, remove_fetched
from faxmail.notify.heldevents import HELD_COMMANDS, hold, replay
from faxmail.notify.received import on_received
from faxmail.notify.requeue import release_held
from faxmail.notify.seedmail import MissingFile, seed_mail
from faxmail.notify.sent import UnknownJob, on_answered, on_sent, on_unanswered
from faxmail.notify.sweep import (
    expire_leases,
    prune_sent_tiffs,
    settle_stale_admissions,
    sweep_archived,
)
from faxmail.store.errors import StoreSchemaOutdated, StoreUnavailable

log = logging.getLogger("faxmail_notify")


HELP = """\
Turn Asterisk's fax events into mail; called by the shipped dialplan (asterisk/extensions.conf)
through System(). Every value is passed as --name=VALUE and checked against its alphabet; free
text (station ids, caller names, fax errors) arrives as base64 of "." + the text. Mails wait
in the notify spool until the mail system took them; `retry` (a systemd timer) delivers what is
left.
"""

EPILOG = """\
exit status: 0 done; 75 spooled, not yet handed over (retried later); 64 usage; 65 an argument
outside its alphabet; 66 unknown job or missing file; 73 cannot write; 78 bad settings or
policy; 70 a bug (see the log: syslog, or notify.log_file).
"""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: {message}\n")


def _fax_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--status", type=token.status, required=True, help="FAXSTATUS (may be empty)")
    add("--error", type=token.text, default="", help="FAXERROR, as BASE64_ENCODE(.TEXT)")
    add(
        "--status-string",
        type=token.text,
        default="",
        help="FAXSTATUSSTRING, as BASE64_ENCODE(.TEXT)",
    )
    add("--pages", type=token.number, default=None, help="FAXPAGES")
    add("--bitrate", type=token.number, default=None, help="FAXBITRATE")
    add("--resolution", type=token.resolution, default="", help="FAXRESOLUTION")
    add("--mode", type=token.mode, default="", help="FAXMODE")
    add("--station", type=token.text, default="", help="REMOTESTATIONID, as BASE64_ENCODE(.TEXT)")


def build_parser() -> Parser:
    parser = Parser(
        prog="faxmail-notify",
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        help="settings YAML (default /etc/faxmail/settings.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, allow_abbrev=False)

    p = command("answered", "send context: the call was answered, the fax starts")
    p.add_argument("--job", type=token.job_id, required=True)
    p.add_argument("--round", type=token.number, default=None, help="FAXMAIL_ROUND")
    p.add_argument("--attempt", type=token.number, default=None)
    p = command("unanswered", "send context, failed extension: an attempt was not answered")
    p.add_argument("--job", type=token.job_id, required=True)
    p.add_argument("--round", type=token.number, default=None, help="FAXMAIL_ROUND")
    p.add_argument("--attempt", type=token.number, required=True, help="AST_OUTGOING_ATTEMPT")
    p.add_argument("--reason", type=token.count, default="", help="REASON (5 busy, 8 congestion)")
    p = command("sent", "send context, h extension: the answered call is over")
    p.add_argument("--job", type=token.job_id, required=True)
    p.add_argument("--round", type=token.number, default=None, help="FAXMAIL_ROUND")
    p.add_argument("--attempt", type=token.number, default=None)
    _fax_options(p)
    p = command("received", "receive context, h extension: mail the received fax")
    p.add_argument("--call", type=token.call_id, default="", help="UNIQUEID")
    p.add_argument("--tiff", type=token.file_name, default=None, help="file in notify.inbox_dir")
    p.add_argument("--did", type=token.phone, default="", help="the dialled number")
    p.add_argument(
        "--caller", type=token.text, default="", help="CALLERID(num), as BASE64_ENCODE(.TEXT)"
    )
    p.add_argument(
        "--caller-name", type=token.text, default="", help="CALLERID(name), as BASE64_ENCODE(.TEXT)"
    )
    _fax_options(p)
    p = command("fetch", "send context, remote Asterisk: write the job's TIFF from the store")
    p.add_argument("--job", type=token.job_id, required=True)
    p.add_argument(
        "--file", type=token.fax_path, required=True, help="FAXFILE: <fax dir>/<job>.tif"
    )
    p.add_argument("--remove", action="store_true", help="the call is over: remove the copy")
    command("retry", "deliver what waits in the notify spool (systemd timer)")
    p = command("mail", "the seed's sendmail.py: TOADDR -f FROM -a FILE... -s SUBJECT -b BODY")
    p.add_argument("toaddr")
    p.add_argument("-f", "--from", dest="fromaddr")
    p.add_argument("-c", "--cc", dest="ccaddr")
    p.add_argument("-s", "--subject", default="")
    p.add_argument("-b", "--body", default="")
    p.add_argument("-a", "--attachment", nargs="*", type=Path, default=[], action="extend")
    return parser


def _run(ctx: Context, opts: argparse.Namespace) -> int:
    name = _event(ctx, opts)
    if opts.command == "retry":
        replay(ctx.settings.notify_spool, lambda words: _replay_one(ctx, words))  # reports first
        release_held(ctx)
        sweep_archived(ctx)
        expire_leases(ctx)
        settle_stale_admissions(ctx)
        prune_sent_tiffs(ctx)
        waiting = deliver_all(ctx)
        for left in waiting:
            print(f"faxmail-notify: still waiting: {left}", file=sys.stderr)
        return EX_TEMPFAIL if waiting else EX_OK
    if name is None:
        return EX_OK
    if deliver(ctx, name) == "pending":
        return EX_TEMPFAIL
    if ctx.spool.names():
        deliver_all(ctx)  # the relay works now: also send what an earlier failure left
    return EX_OK


def _event(ctx: Context, opts: argparse.Namespace) -> str | None:
    """Handle the event; the spool entry to deliver now, if any."""
    if opts.command == "answered":
        on_answered(ctx, opts.job, opts.round, opts.attempt)
    elif opts.command == "unanswered":
        return on_unanswered(ctx, opts.job, opts.round, opts.attempt or 0, opts.reason or None)
    elif opts.command == "sent":
        return on_sent(ctx, opts.job, opts.round, opts.attempt, _fax(opts))
    elif opts.command == "fetch":
        (remove_fetched if opts.remove else on_fetch)(ctx, opts.job, Path(opts.file))
    elif opts.command == "received":
        reception = Reception(
            call_id=opts.call,
            tiff_name=opts.tiff or "",
            did=opts.did,
            caller=opts.caller,
            caller_name=opts.caller_name,
            fax=_fax(opts),
        )
        return on_received(ctx, reception)
    elif opts.command == "mail":
        return seed_mail(
            ctx,
            opts.toaddr,
            sender=opts.fromaddr,
            cc=opts.ccaddr,
            subject=opts.subject,
            body=opts.body,
            attachments=opts.attachment,
        )
    return None


def _fax(opts: argparse.Namespace) -> FaxReport:
    return FaxReport(
        status=opts.status,
        error=opts.error,
        status_string=opts.status_string,
        pages=opts.pages,
        bitrate=opts.bitrate,
        resolution=opts.resolution,
        mode=opts.mode,
        station=opts.station,
    )


def main(argv: list[str] | None = None) -> int:
    setup_logging(Settings())  # until the settings are read: syslog and stderr
    words = sys.argv[1:] if argv is None else list(argv)
    try:
        opts = build_parser().parse_args(words)
    except Refused as exc:
        log.error("refused: %s", exc)
        return EX_DATAERR
    try:
        ctx = load_context(opts.settings)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"faxmail-notify: {exc.source}: {problem}", file=sys.stderr)
        return EX_CONFIG
    except StoreUnavailable as exc:
        if opts.command in HELD_COMMANDS:
            return _hold(opts, words, exc)
        log.error("cannot reach the job store (tried again later): %s", exc)
        return EX_TEMPFAIL
    except (OSError, StoreSchemaOutdated) as exc:
        log.error("cannot open the job store or the notify spool: %s", exc)
        return EX_CANTCREAT
    try:
        return _run(ctx, opts)
    except Refused as exc:
        log.error("refused: %s", exc)
        return EX_DATAERR
    except StoreUnavailable as exc:
        # A received fax's mail may be out already: only a call's report is kept to run again.
        if opts.command in HELD_COMMANDS and opts.command != "received":
            return _hold(opts, words, exc)
        return _classify(exc)
    except Exception as exc:  # noqa: BLE001 - an exit code and a traceback, not a crash
        return _classify(exc)
    finally:
        ctx.close()


def _hold(opts: argparse.Namespace, words: list[str], exc: StoreUnavailable) -> int:
    """Keep Asterisk's report for `retry` (heldevents.py): the store cannot take it now."""
    try:
        settings = read_settings(opts.settings)
        kept = hold(settings.notify_spool, words)
    except (OSError, ConfigError) as error:
        log.error(
            "job %s: report lost, the job store (%s) and the spool fail: %s",
            opts.job if "job" in opts else "-",
            exc,
            error,
        )
        return EX_CANTCREAT
    log.warning("%s report held in %s until the job store answers: %s", opts.command, kept, exc)
    return EX_TEMPFAIL


def _replay_one(ctx: Context, words: list[str]) -> None:
    try:
        opts = build_parser().parse_args(words)
    except SystemExit as exc:  # checked when it was held: only a changed alphabet gets here
        raise ValueError(f"no longer a valid report: {exc}") from None
    _event(ctx, opts)


def _classify(exc: Exception) -> int:
    if isinstance(exc, OutsideFaxDir):
        log.error("refused: %s", exc)
        return EX_DATAERR
    if isinstance(exc, UnknownJob | MissingFile):
        log.error("%s", exc)
        return EX_NOINPUT
    if isinstance(exc, OSError):
        log.error("cannot write: %s", exc)
        return EX_CANTCREAT
    if isinstance(exc, StoreUnavailable):
        log.error("the job store failed (tried again later): %s", exc)
        return EX_TEMPFAIL
    log.exception("unexpected error")
    return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
