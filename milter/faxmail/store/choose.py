"""The one place that picks the job store's implementation from the settings (`store:`).

Without `store.url`, the SQLite file in the state folder (one host, nothing to set up); with a
PostgreSQL URL, the shared database (`postgres.py`), imported only then.
"""

from __future__ import annotations

from pathlib import Path

from faxmail.core.settings import Settings
from faxmail.store.errors import StoreUnavailable
from faxmail.store.interface import AdminStore

SQLITE_FILE = "faxmail.sqlite"


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite store's file; None when the store is PostgreSQL."""
    return None if settings.store.url else settings.state_dir / SQLITE_FILE


def store_url(settings: Settings) -> str | None:
    """The PostgreSQL URL with the password of `store.password_file` (None: SQLite)."""
    url = settings.store.url
    if url is None or settings.store.password_file is None:
        return url
    try:
        password = settings.store.password_file.read_text().splitlines()[0]
    except (OSError, IndexError) as exc:
        raise StoreUnavailable(
            f"store.password_file {settings.store.password_file}: {exc}"
        ) from exc
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, password=password)


def open_store(settings: Settings) -> AdminStore:
    """The job store the settings name. StoreUnavailable: it cannot be reached now;
    StoreSchemaOutdated: a PostgreSQL store that needs `faxmail store migrate` first."""
    path = sqlite_path(settings)
    if path is not None:
        from faxmail.store.sqlite import SqliteStore

        return SqliteStore(path)
    from faxmail.store.postgres import PostgresStore

    url = store_url(settings)
    assert url is not None
    return PostgresStore(url)
