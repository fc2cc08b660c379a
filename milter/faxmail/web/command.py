"""`faxmail web` (serve the status page) and `faxmail web passwd` (make a login's hash line)."""

from __future__ import annotations

import argparse
import getpass
import logging
import re
import sys
from pathlib import Path
from typing import Any

from faxmail.admin.context import Admin, AdminError, open_admin
from faxmail.core.exitcodes import EX_CONFIG, EX_REFUSED
from faxmail.core.settings import WEB_USER
from faxmail.store.choose import open_store as open_job_store
from faxmail.web.login import LoginConfigError, Logins
from faxmail.web.passwords import make_hash

log = logging.getLogger("faxmail.web")

DESCRIPTION = """\
Serve a read-only status page of the job store: the queue of each line (dialling, waiting,
next attempt), the recent jobs with state, pages, attempts and a thumbnail of page 1, the
received faxes with their routing, and a chart of faxes and line minutes per day.

It offers no action (cancel and resend stay with the faxmail command) and shows nothing
without a login: add one or more lines made by `faxmail web passwd NAME` under `web: users:`
in the settings (HTTP Basic; with none it refuses to start). It binds to 127.0.0.1:8895
(settings web.bind, web.port): to reach it from other machines, put the site's reverse proxy
with TLS in front of it (README: Status page) rather than binding it to a public address.
Run as root, it serves as asterisk.user, like the other job commands.
"""

HASH_LINE_HELP = """\
Print a `web.users` entry for NAME: the password (asked twice on the terminal, or read as one
line from standard input with --stdin) hashed with scrypt. Paste the line under `web: users:`
in the settings file and restart faxmail web. The password itself is stored nowhere.
"""


def add_web_command(sub: Any) -> None:
    """Add `faxmail web` to the `faxmail` command's subparsers (pyproject: faxmail.commands)."""
    web = sub.add_parser(
        "web",
        help="serve the read-only status page (queue, jobs, received faxes, chart)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    web.add_argument("--settings", type=Path, metavar="FILE", help="daemon settings YAML")
    web.add_argument("--bind", metavar="ADDR", help="listen address (default: settings web.bind)")
    web.add_argument("--port", type=int, metavar="N", help="port (default: settings web.port)")
    web.set_defaults(func=serve)
    actions = web.add_subparsers(dest="web_command", metavar="ACTION")
    passwd = actions.add_parser(
        "passwd",
        help="print a web.users line (name and password hash) to paste into the settings",
        description=HASH_LINE_HELP,
    )
    passwd.add_argument("name", metavar="NAME", help="the login name (letters, digits, . _ @ -)")
    passwd.add_argument("--stdin", action="store_true", help="read the password from stdin")
    passwd.set_defaults(func=passwd_line)


def passwd_line(args: argparse.Namespace) -> int:
    if not re.fullmatch(WEB_USER, args.name):
        print(f"faxmail web passwd: {args.name!r:.70} is not a login name", file=sys.stderr)
        return EX_REFUSED
    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("faxmail web passwd: the two passwords differ", file=sys.stderr)
            return EX_REFUSED
    if len(password) < 8:
        print("faxmail web passwd: use at least 8 characters", file=sys.stderr)
        return EX_REFUSED
    print("# under `web:` -> `users:` in the settings file:", file=sys.stderr)
    print(f'{args.name}: "{make_hash(password)}"')
    return 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from faxmail.web.app import WebContext, build_app

    logging.basicConfig(level=logging.INFO, format="faxmail web: %(message)s")
    try:
        admin = open_admin(args.settings)  # as root: becomes asterisk.user, as the daemon runs
    except AdminError as exc:
        print(f"faxmail web: {exc}", file=sys.stderr)
        return exc.code
    settings, source, database = admin.settings, admin.settings_source, admin.store.location
    admin.close()
    try:
        logins = Logins(settings.web.users)
    except LoginConfigError as exc:
        print(f"faxmail web: {source}: {exc}", file=sys.stderr)
        return EX_CONFIG
    if not logins:
        print(
            f"faxmail web: no login configured: set web.users in {source} (one line per login,"
            " made by `faxmail web passwd NAME`); the page shows nothing without one",
            file=sys.stderr,
        )
        return EX_CONFIG

    def open_store(user: str) -> Admin:
        # the store the settings name: the SQLite file, or the shared PostgreSQL database
        return Admin(settings, source, open_job_store(settings), actor=f"web:{user}")

    host = args.bind or settings.web.bind
    port = args.port or settings.web.port
    log.info(
        "serving http://%s:%d/ from %s, %d login(s) (web.users)",
        host,
        port,
        database,
        len(settings.web.users),
    )
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("bound to %s, not loopback: without a TLS proxy, logins cross in clear", host)
    app = build_app(WebContext(logins=logins, open_admin=open_store))
    uvicorn.run(app, host=host, port=port, server_header=False, log_level="info")
    return 0
