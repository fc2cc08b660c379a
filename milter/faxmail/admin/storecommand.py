"""`faxmail store migrate`: create or upgrade the PostgreSQL job store's tables.

Explicit, never done by a daemon on its own: several hosts share the database, and a schema
change is the admin's decision, made once, while the other hosts' daemons refuse to start on
a store of another version. For the SQLite store there is nothing to do (its tables are made
and extended when the file is opened), and the command says so.

Exit codes: 0 done (or nothing to do); 75 the database cannot be reached; 78 the settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faxmail.core.exitcodes import EX_CONFIG, EX_OK, EX_TEMPFAIL
from faxmail.core.settings import load_settings
from faxmail.core.yamlfile import ConfigError
from faxmail.store.choose import sqlite_path, store_url
from faxmail.store.errors import StoreSchemaOutdated, StoreUnavailable

DEFAULT_SETTINGS = Path("/etc/faxmail/settings.yaml")


def _migrate(args: argparse.Namespace) -> int:
    settings_path = args.settings
    if settings_path is None and DEFAULT_SETTINGS.exists():
        settings_path = DEFAULT_SETTINGS
    try:
        settings = load_settings(settings_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return EX_CONFIG
    except OSError as exc:
        print(f"faxmail store migrate: cannot read the settings: {exc}", file=sys.stderr)
        return EX_CONFIG
    path = sqlite_path(settings)
    if path is not None:
        print(f"the job store is the SQLite file {path}: its tables are kept up to date at open")
        return EX_OK
    from faxmail.store.postgres import connect
    from faxmail.store.postgres_schema import migrate

    try:
        url = store_url(settings)
        assert url is not None
        with connect(url) as db:
            found, now = migrate(db)
    except StoreUnavailable as exc:
        print(f"faxmail store migrate: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except StoreSchemaOutdated as exc:
        print(f"faxmail store migrate: a newer faxmail made this store: {exc}", file=sys.stderr)
        return EX_CONFIG
    if found == now:
        print(f"the job store is at schema version {now} already")
    else:
        print(f"the job store went from {'nothing' if found is None else found} to version {now}")
    return EX_OK


def add_store_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = sub.add_parser("store", help="work with the job store itself")
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    migrate = store_sub.add_parser(
        "migrate",
        help="create or upgrade a PostgreSQL job store's tables (settings store.url)",
        description=(
            "Create the tables of the PostgreSQL job store named by the settings' store.url,"
            " or bring an older one to this version, in one transaction. Run it once before"
            " the first start and after each upgrade of faxmail; daemons refuse to start on a"
            " store of another version. Exit 0 done, 75 the database cannot be reached, 78"
            " the settings."
        ),
    )
    migrate.add_argument("--settings", type=Path, metavar="FILE", help="daemon settings YAML")
    migrate.set_defaults(func=_migrate)
