"""`faxmail doctor`: what it reads from postconf and Asterisk, the lines it prints, its exit.

The whole command on a real installation (Debian 12 chroot, its Postfix, the unit's milter, a
real Asterisk) is in tests/test_install.py; here are its parts, and the socket check against a
private Postfix."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxmail.admin import doctorasterisk, doctorpostfix
from faxmail.admin.doctorchecks import Install, check_state
from faxmail.admin.doctorstore import check_store
from faxmail.admin.main import main
from faxmail.core.settings import Settings
from infra.postgres import PostgresServer
from infra.protocols import MakePostfix, StartMilter
from infra.storekinds import migrated_database

DEBIAN_F = """\
smtp/inet/service = smtp
smtp/inet/chroot = y
smtp/inet/command = smtpd
submission/inet/chroot = y
submission/inet/command = smtpd -o syslog_name=postfix/submission
pickup/unix/chroot = y
pickup/unix/command = pickup
cleanup/unix/chroot = y
cleanup/unix/command = cleanup
qmgr/unix/chroot = n
qmgr/unix/command = qmgr
"""
MAIN = {
    "queue_directory": "/var/spool/postfix",
    "smtpd_milters": "unix:/faxmail/milter.sock",
    "non_smtpd_milters": "unix:/faxmail/milter.sock",
}


def test_postconf_output_is_read_as_postfix_means_it() -> None:
    assert doctorpostfix.parse_params("a = 1\nb =\nc = x y\n") == {"a": "1", "b": "", "c": "x y"}
    assert doctorpostfix.split_milters(
        "unix:/a, { inet:127.0.0.1:1, connect_timeout=10s } unix:/b"
    ) == ("unix:/a", "inet:127.0.0.1:1", "unix:/b")
    users = doctorpostfix.milter_users(
        MAIN,
        doctorpostfix.parse_params(DEBIAN_F),
        {"submission/inet/smtpd_milters": "unix:/elsewhere.sock"},
    )
    assert [(u.service, u.program, u.chroot, u.milters) for u in users] == [
        ("smtp/inet", "smtpd", Path("/var/spool/postfix"), ("unix:/faxmail/milter.sock",)),
        ("submission/inet", "smtpd", Path("/var/spool/postfix"), ("unix:/elsewhere.sock",)),
        ("cleanup/unix", "cleanup", Path("/var/spool/postfix"), ("unix:/faxmail/milter.sock",)),
    ]


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[Path]:
    """A queue directory with a socket at faxmail/milter.sock that accepts connections."""
    queue = tmp_path / "queue"
    (queue / "faxmail").mkdir(parents=True)
    tmp_path.chmod(0o755)
    queue.chmod(0o755)
    path = queue / "faxmail" / "milter.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(5)
    yield path
    server.close()


def _service(chroot: Path | None, spec: str) -> doctorpostfix.MilterUser:
    return doctorpostfix.MilterUser("cleanup/unix", "cleanup", chroot, (spec,))


def test_a_chrooted_service_reaches_the_socket_by_its_path_inside(listening: Path) -> None:
    queue = listening.parent.parent
    listening.chmod(0o666)
    (finding,) = doctorpostfix._one_service(
        _service(queue, "unix:/faxmail/milter.sock"), listening, "postfix"
    )
    assert finding.ok, finding.line()
    listening.chmod(0o600)  # root's: Postfix's user may not connect
    (finding,) = doctorpostfix._one_service(
        _service(queue, "unix:/faxmail/milter.sock"), listening, "postfix"
    )
    assert not finding.ok
    assert "as user postfix: connect to /faxmail/milter.sock: Permission denied" in finding.text


def test_a_chrooted_service_with_the_full_path_is_told_the_name_it_needs(listening: Path) -> None:
    queue = listening.parent.parent
    (finding,) = doctorpostfix._one_service(
        _service(queue, f"unix:{listening}"), listening, "postfix"
    )
    assert finding.line() == (
        f"FAIL postfix: cleanup/unix (cleanup, chrooted in {queue}) opens {listening} = "
        f"{queue}{listening}, but faxmail-milter listens on {listening}: name it "
        "unix:/faxmail/milter.sock there"
    )


def test_doctor_without_settings_file_says_where_to_get_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "settings.yaml"
    assert main(["doctor", "--settings", str(missing)]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"FAIL settings: {missing} does not exist: copy the example")


def test_settings_check_names_a_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("state_dir: /x\nsokcet: unix:/x\n")
    assert main(["settings", "check", str(path)]) == 1
    assert "line 2: sokcet: Extra inputs are not permitted" in capsys.readouterr().err
    path.write_text("state_dir: /x\n")
    assert main(["settings", "check", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_help_teaches_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    out = capsys.readouterr().out
    for name in ("settings", "policy", "socket", "spool", "state", "store", "tools", "dns"):
        assert f"\n  {name}" in out
    assert "Exit status 0 only when every check passed" in out


def _postgres_install(tmp_path: Path, url: str) -> Install:
    settings = Settings(state_dir=tmp_path, asterisk={"user": None}, store={"url": url})
    return Install(tmp_path / "s.yaml", settings=settings)


def test_a_postgres_store_is_checked_reachable_and_current(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    (finding,) = check_store(_postgres_install(tmp_path, migrated_database(pg_server)))
    assert finding.ok, finding.line()
    assert "answers the daemon's user; its schema is the current version" in finding.line()
    (state,) = check_state(_postgres_install(tmp_path, migrated_database(pg_server)))
    assert state.ok and "the job store is PostgreSQL (see store)" in state.line()


def test_a_postgres_store_without_the_schema_names_the_migrate_command(
    tmp_path: Path, pg_server: PostgresServer
) -> None:
    (finding,) = check_store(_postgres_install(tmp_path, pg_server.create_database()))
    assert not finding.ok
    assert "has no faxmail schema" in finding.line() and "faxmail store migrate" in finding.line()


def test_an_unreachable_postgres_store_is_named_with_what_to_check(tmp_path: Path) -> None:
    from infra.net import free_port

    url = f"postgresql://faxmail@127.0.0.1:{free_port()}/faxmail"
    (finding,) = check_store(_postgres_install(tmp_path, url))
    assert not finding.ok
    assert finding.line().startswith("FAIL store: the PostgreSQL job store, opened as")
    assert "cannot be reached" in finding.line() and "pg_hba.conf" in finding.line()


def test_a_sqlite_store_is_left_to_the_state_check(tmp_path: Path) -> None:
    install = Install(tmp_path / "s.yaml", settings=Settings(state_dir=tmp_path))
    (finding,) = check_store(install)
    assert finding.ok and "SQLite" in finding.line()


def test_world_readable_job_store_is_named(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    store = state / "faxmail.sqlite"
    store.write_bytes(b"")
    store.chmod(0o644)
    install = Install(
        tmp_path / "s.yaml", settings=Settings(state_dir=state, asterisk={"user": None})
    )
    (finding,) = check_state(install)
    assert finding.line() == (
        f"FAIL state: {store} is open to every local user (senders, subjects and numbers): "
        f"chmod 0640 {store}"
    )


class FakeAsterisk:
    """Answers the control socket's protocol with canned CLI output (the real Asterisk is in
    test_install.py)."""

    def __init__(self, path: Path, answers: dict[str, str]) -> None:
        self.answers = answers
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(5)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"fax-gw/1/22.0\n")
                command = conn.recv(4096).rstrip(b"\0").decode().removeprefix("cli quit after ")
                conn.sendall(self.answers.get(command, f"No such command '{command}'\n").encode())


MODULES_OK = "".join(f"{m:30} x 0 Running core\n" for m in doctorasterisk.MODULES)


def test_asterisk_without_spandsp_is_named(tmp_path: Path) -> None:
    ctl = tmp_path / "asterisk.ctl"
    FakeAsterisk(ctl, {"module show like .so": MODULES_OK.replace("res_fax_spandsp.so", "x.so")})
    install = Install(tmp_path / "s.yaml", settings=Settings(), asterisk_ctl=ctl)
    first, *_ = doctorasterisk.check_asterisk(install)
    assert first.line() == (
        "FAIL asterisk: modules not running: res_fax_spandsp.so: load them in modules.conf "
        "(asterisk/README.md section 1)"
    )


def test_dialplan_with_other_settings_is_named(tmp_path: Path) -> None:
    ctl = tmp_path / "asterisk.ctl"
    notify = tmp_path / "faxmail-notify"
    notify.write_text("#!/bin/sh\n")
    notify.chmod(0o755)
    FakeAsterisk(
        ctl,
        {
            "module show like .so": MODULES_OK,
            "dialplan show send@faxmail-send": "'send' => 1. System(${FAXMAIL_NOTIFY} x)\n",
            "dialplan show globals": (
                f"   FAXMAIL_NOTIFY={notify}\n   FAXMAIL_SETTINGS=/etc/x.yaml\n"
            ),
        },
    )
    settings_path = tmp_path / "settings.yaml"
    install = Install(settings_path, settings=Settings(), asterisk_ctl=ctl)
    modules, dialplan = doctorasterisk.check_asterisk(install)
    assert modules.ok
    assert dialplan.line() == (
        f"FAIL dialplan: FAXMAIL_SETTINGS is /etc/x.yaml, but these settings are {settings_path}: "
        f"notify would read other ones; set FAXMAIL_SETTINGS={settings_path} in "
        "faxmail-globals.conf"
    )


@pytest.mark.postfix
def test_socket_check_against_a_private_postfix(
    start_milter: StartMilter, make_postfix: MakePostfix, capsys: pytest.CaptureFixture[str]
) -> None:
    milter = start_milter(None, "")
    pf = make_postfix(milter, extra_main_cf={"non_smtpd_milters": milter.postfix_spec})
    settings = Path(milter.settings["state_dir"]).parent / "settings.yaml"
    argv = ["doctor", "--settings", str(settings), "--check", "socket"]
    argv += ["--postfix-config", str(pf.config_dir)]
    assert main(argv) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    sock = milter.postfix_spec.removeprefix("unix:")
    assert f"OK   socket: {sock} is root:postfix 0660" in out
    assert "(smtpd, not chrooted) reaches the milter as postfix" in out
    assert "cleanup/unix (cleanup, not chrooted) reaches the milter as postfix" in out
    os.chmod(sock, 0o666)
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert f"FAIL socket: {sock} is root:postfix 0666: every local user could claim" in out
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
