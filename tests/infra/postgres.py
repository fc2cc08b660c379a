"""A private, throwaway PostgreSQL server for tests, on a loopback port in a temp folder.

Like ``infra.postfix`` starts a private Postfix: ``initdb`` into a fresh folder, ``pg_ctl``
to start and stop it, trust authentication on 127.0.0.1 only, a Unix socket in the folder
(never /run/postgresql). PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (the Debian package creates it). ``stop()``/``start()`` let a test take the
database away and bring it back on the same port and data. ``fsync`` stays on unless asked:
the benchmark measures what a 250 costs.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from infra.net import free_port

BIN = Path(os.environ.get("FAXMAIL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"  # as root; otherwise the test's own user
SUPERUSER = "faxmail_test"


def _as_server_user() -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresServer:
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="faxmail-pg-")))
    port: int = field(default_factory=free_port)
    fsync: bool = True
    _databases: int = 0

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_as_server_user(), *argv], capture_output=True, text=True, check=check, timeout=120
        )

    def init(self) -> PostgresServer:
        if not (BIN / "initdb").exists():
            raise RuntimeError(f"no {BIN}/initdb: run scripts/install-deps --test (postgresql)")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self._run(
            str(BIN / "initdb"),
            "-D", str(self.data),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            "fsync": "on" if self.fsync else "off",
            "max_connections": "100",
            "shared_buffers": "32MB",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        return self

    def start(self) -> None:
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """Stop the server now (fast shutdown: connected clients are cut off)."""
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self) -> str:
        """A new empty database; its URL."""
        self._databases += 1
        name = f"faxmail_{os.getpid()}_{self._databases}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return self.url(name)

    def psql(self, database: str, sql: str) -> str:
        done = self._run(
            str(BIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
            "-c", sql,
        )  # fmt: skip
        return done.stdout

    def close(self) -> None:
        if self.data.exists():
            self._run(
                str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", check=False
            )  # fmt: skip
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres(*, fsync: bool = True) -> PostgresServer:
    server = PostgresServer(fsync=fsync).init()
    try:
        server.start()
    except subprocess.CalledProcessError:
        log = server.log.read_text() if server.log.exists() else ""
        server.close()
        raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
    return server
