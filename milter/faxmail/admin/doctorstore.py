"""`faxmail doctor`'s check of a PostgreSQL job store (`store.url`): reachable as the daemon's
user (its password file too), and its schema the version this faxmail needs.

The SQLite file is checked with the state directory (doctorchecks.check_state); a store that
needs `faxmail store migrate` is named, never migrated here: the doctor only looks.
"""

from __future__ import annotations

from collections.abc import Iterator

from faxmail.admin.doctorchecks import Finding, Install, run_as
from faxmail.core.settings import Settings
from faxmail.store.choose import open_store
from faxmail.store.errors import StoreSchemaOutdated, StoreUnavailable


def _reach(settings: Settings) -> str | None:
    """None when the store opens (schema current), else what is wrong and what to do."""
    try:
        store = open_store(settings)
    except StoreUnavailable as exc:
        return (
            f"cannot be reached: {exc}; check store.url, store.password_file (or ~/.pgpass) "
            "and the server's pg_hba.conf for this host"
        )
    except StoreSchemaOutdated as exc:
        return str(exc)  # it names the command that brings the schema up to date
    store.close()
    return None


def check_store(install: Install) -> Iterator[Finding]:
    assert install.settings is not None
    settings = install.settings
    if settings.store.url is None:
        yield Finding("store", True, "the job store is the SQLite file (see state)")
        return
    from faxmail.store.postgres_schema import SCHEMA_VERSION

    owner = install.daemon_user or "the daemon's user"
    complaint = run_as(install.daemon_user, lambda: _reach(settings))
    if complaint:
        yield Finding("store", False, f"the PostgreSQL job store, opened as {owner}, {complaint}")
        return
    yield Finding(
        "store",
        True,
        f"the PostgreSQL job store of store.url answers {owner}; its schema is the current "
        f"version {SCHEMA_VERSION}",
    )
