"""Both job store implementations for the same tests: SQLite (a file in the test's folder)
and PostgreSQL (a fresh, migrated database on the session's private server).

``open_store`` is parametrised over the two: a test that takes it runs once per store kind.
It is a function, so that a test can open the same store again (a restart) or a second time
(another process, another host).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from faxmail.store.interface import AdminStore
from faxmail.store.postgres import PostgresStore
from faxmail.store.postgres_schema import migrate
from faxmail.store.sqlite import SqliteStore
from infra.postgres import PostgresServer, start_postgres

OpenStore = Callable[[], AdminStore]
STORE_KINDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL server (fsync off: tests, not durability)."""
    server = start_postgres(fsync=False)
    yield server
    server.close()


def migrated_database(server: PostgresServer) -> str:
    """A new database with faxmail's schema; its URL."""
    url = server.create_database()
    with psycopg.connect(url, autocommit=True) as db:
        migrate(db)
    return url


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """None for SQLite (the default settings), else a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("pg_server")
    return migrated_database(server)


@pytest.fixture
def open_store(store_url: str | None, tmp_path: Path) -> Iterator[OpenStore]:
    opened: list[AdminStore] = []

    def open_() -> AdminStore:
        store: AdminStore = (
            SqliteStore(tmp_path / "state" / "faxmail.sqlite")
            if store_url is None
            else PostgresStore(store_url)
        )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
