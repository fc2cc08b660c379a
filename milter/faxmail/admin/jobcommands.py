"""The job subcommands of `faxmail`: jobs, show, cancel, resend, stats (parsers and runners).

Every runner opens the store the settings name, does one thing, and returns the exit status:
0 done, 1 not found or refused (one sentence on standard error), 78 unusable settings, policy
or store.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from faxmail.admin.context import Admin, AdminError, open_admin, parse_since
from faxmail.admin.stats import ESTIMATE
from faxmail.core.replies import Refusal
from faxmail.outbound.recipient import parse_number
from faxmail.store.model import EventKind, JobFilter, JobState

# What --state takes: the job states, and "duplicate" (jobs that absorbed a resent mail).
STATES = (*JobState, EventKind.DUPLICATE)

Runner = Callable[[Admin, argparse.Namespace], None]


def _run(runner: Runner) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            admin = open_admin(args.settings)
        except AdminError as exc:
            print(f"faxmail {args.command}: {exc}", file=sys.stderr)
            return exc.code
        try:
            runner(admin, args)
        except AdminError as exc:
            print(f"faxmail {args.command}: {exc}", file=sys.stderr)
            return exc.code
        finally:
            admin.close()
        return 0

    return run


def _since(text: str) -> float:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _states(text: str) -> tuple[str, ...]:
    states = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in states if s not in STATES]
    if unknown or not states:
        raise argparse.ArgumentTypeError(f"states are {', '.join(STATES)}; not {text!r}")
    return states


def _limit(text: str) -> int | None:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("--limit must be 0 (all) or more")
    return value or None


# --- runners ---------------------------------------------------------------------------------


def _jobs(admin: Admin, args: argparse.Namespace) -> None:
    from faxmail.admin.listing import list_inbound, list_jobs

    if args.inbound:
        list_inbound(admin, args.since, args.limit, args.json, sys.stdout)
        return
    e164, digits = None, None
    if args.number:
        try:
            e164 = parse_number(args.number, admin.policy().destinations.region).e164
        except Refusal:
            digits = "".join(c for c in args.number if c.isdigit()) or args.number
    chosen = {s for group in args.state for s in group}
    wanted = JobFilter(
        states=tuple(s for s in JobState if s in chosen),
        duplicates=EventKind.DUPLICATE in chosen,
        sender=args.sender,
        number_e164=e164,
        number_digits=digits,
        since=args.since,
        limit=args.limit,
    )
    list_jobs(admin, wanted, args.json, sys.stdout)


def _show(admin: Admin, args: argparse.Namespace) -> None:
    from faxmail.admin.show import show_job

    show_job(admin, admin.job(args.job), args.json, sys.stdout)


def _cancel(admin: Admin, args: argparse.Namespace) -> None:
    from faxmail.admin.cancel import cancel

    outcome = cancel(admin, args.job)
    job = outcome.job
    if outcome.callfile is None and outcome.waiting:
        how = "it was waiting in faxmail's queue (no call file)"
    elif outcome.callfile is None:
        how = "no call file of it was in Asterisk's queue"
    elif outcome.attempts:
        how = f"its call file was taken out of Asterisk's queue after {outcome.attempts} attempt(s)"
    else:
        how = "its call file was taken out of Asterisk's queue before it was dialled"
    print(f"job {job.id} to {job.number_given} cancelled: {how}.")
    print(outcome.mail)


def _resend(admin: Admin, args: argparse.Namespace) -> None:
    from faxmail.admin.resend import resend

    done = resend(admin, args.job, args.number)
    job = done.job
    print(
        f"job {job.id} {job.state}: a resend of {done.original.id} to {job.number_given}"
        f" ({job.number_e164}), {job.pages} page(s); its result mail goes to"
        f" {job.reply_to or job.author}."
    )


def _stats(admin: Admin, args: argparse.Namespace) -> None:
    from faxmail.admin.stats import show_stats

    show_stats(admin, args.since, args.json, sys.stdout)


# --- parsers ---------------------------------------------------------------------------------

_SETTINGS_HELP = (
    "the daemon's settings YAML: its state_dir holds the job store, asterisk.spool_dir the call"
    " files (default /etc/faxmail/settings.yaml if it exists, else the embedded defaults)"
)
_EXIT = (
    "Exit status: 0 done; 1 not found or refused (the reason on standard error); 78 unusable"
    " settings, policy or job store. Run as root or Asterisk's user (root becomes asterisk.user)."
)


def add_job_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def command(name: str, text: str, description: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=text, description=description, epilog=_EXIT)
        parser.add_argument("--settings", type=Path, metavar="FILE", help=_SETTINGS_HELP)
        return parser

    jobs = command(
        "jobs",
        "list fax jobs (or received faxes), newest first",
        "List fax jobs, newest first: id, time queued, sender, number, pages, state, dial"
        " attempts and the last result. Times are local.",
    )
    jobs.add_argument(
        "--state",
        type=_states,
        action="append",
        default=[],
        metavar="STATE[,STATE]",
        help=f"only these states ({', '.join(STATES)}; duplicate: jobs whose mail came again"
        " and was not faxed twice); repeatable",
    )
    jobs.add_argument("--sender", metavar="ADDR", help="only this sender, or @domain")
    jobs.add_argument(
        "--number", metavar="N", help="only this number (any notation), or digits it contains"
    )
    jobs.add_argument(
        "--since", type=_since, metavar="WHEN", help="only since 30m, 12h, 2d, 1w ago, or a date"
    )
    jobs.add_argument(
        "--inbound",
        action="store_true",
        help="list received faxes instead: time, DID, caller, pages, routed to, mail delivered",
    )
    jobs.add_argument(
        "--limit", type=_limit, default=50, metavar="N", help="at most N rows (default 50; 0: all)"
    )
    jobs.add_argument("--json", action="store_true", help="machine-readable output")
    jobs.set_defaults(func=_run(_jobs))

    show = command(
        "show",
        "everything about one job",
        "Everything about one job: the decision (proof, the policy entry that allows the"
        " sender), rendering (pages, time, TIFF size, estimated line time), its call file in"
        " Asterisk's spool, each dial attempt with its reason and fax result, the result mail"
        " and the job's history.",
    )
    show.add_argument("job", metavar="JOB", help="job id, or a unique start of it")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_run(_show))

    cancel = command(
        "cancel",
        "take a queued fax out of Asterisk's queue; the sender is told",
        "Take a queued job's call file out of Asterisk's spool and mark the job cancelled; the"
        " sender gets the job's result mail (faxmail-notify's mail path). Refused while"
        " Asterisk is dialling it (an answered call cannot be stopped: try again after the"
        " attempt) and for jobs being faxed or done. A cancelled job does not count against"
        " rate limits.",
    )
    cancel.add_argument("job", metavar="JOB", help="job id, or a unique start of it")
    cancel.set_defaults(func=_run(_cancel))

    resend = command(
        "resend",
        "fax a finished job's document again, as a new linked job",
        "Queue a finished (sent, failed or cancelled) job's TIFF again as a new job linked to"
        " it, with its own result mail to the same sender. The number (the job's, or --number)"
        " goes through the policy's checks as it reads now; a number it forbids is refused with"
        " the milter's SMTP reply. No rate limit applies. A job's TIFF is kept for the policy's"
        " notify.keep_sent_tiff_days (default 7) after it ended.",
    )
    resend.add_argument("job", metavar="JOB", help="job id, or a unique start of it")
    resend.add_argument("--number", metavar="N", help="fax this number instead")
    resend.set_defaults(func=_run(_resend))

    stats = command(
        "stats",
        "per sender and destination: faxes, pages, success rate, line minutes",
        "Per sender and per destination since WHEN: faxes, sent/failed/cancelled/open, success"
        " rate (sent / (sent + failed)), pages transmitted, dial attempts and line minutes. The"
        f" line minutes are estimated: {ESTIMATE}.",
    )
    stats.add_argument(
        "--since",
        type=_since,
        default="30d",
        metavar="WHEN",
        help="30m, 12h, 2d, 1w ago, or a date (default 30d)",
    )
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(func=_run(_stats))
