"""scripts/install into a clean Debian 12, as an admin would, and the install at work.

A debootstrapped bookworm (tests/infra/debianroot.py: nothing of this machine's packages or
Python) gets this checkout in /usr/src/faxmail and runs ``scripts/install`` there: apt, the
venv in /opt/faxmail, /etc/faxmail, users, folders, units. Then, as README's "Install for
production" says: main.cf gets postfix/main.cf.milter's lines, the settings and policy their
site values; the chroot's own Postfix starts as Debian's unit starts it (smtpd and cleanup
chrooted), and faxmail-milter runs from the installed unit's ExecStartPre/ExecStart lines as
its User/Group under its hardening (tests/infra/unitrun.py, since no systemd runs here).

Asterisk: Debian 12 has none, so the sid Asterisk of scripts/asterisk-chroot, loaded with
asterisk/ as shipped, lends its control socket to the bookworm root (/run/asterisk) for
doctor's Asterisk checks; it does not share the spool, so the call file stays in outgoing/.

Only the package downloads are cached between runs (apt's .deb files, PyPI's wheels and
sdists for --wheelhouse: the chroot cannot reach PyPI through this machine's proxy itself).
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import unitrun
from infra.debianroot import DebianRoot
from infra.dkimkeys import Signer
from infra.dns import DnsServer
from infra.installed import SOCKET, UNIT, Installed, installed_root, name_of
from infra.mail import Attachment, build_message
from infra.pdfs import make_pdf

pytestmark = [pytest.mark.postfix, pytest.mark.install]

FAX = "fax+03-1234-5678@example.jp"


@pytest.fixture(scope="module")
def installed(_dns_session: DnsServer, asterisk_root: Path) -> Iterator[Installed]:
    with installed_root(_dns_session, asterisk_root) as state:
        yield state


def test_install_puts_everything_where_the_units_expect_it(installed: Installed) -> None:
    root = installed.root
    release = os.readlink(root.path("/opt/faxmail/current"))
    assert release.startswith("/opt/faxmail/releases/")
    # Debian's own interpreter, which every user may run (not a pyenv under /root).
    assert os.readlink(root.path(f"{release}/bin/python3")) == "/usr/bin/python3"
    for cmd in ("faxmail", "faxmail-milter", "faxmail-notify"):
        root.run("test", "-x", f"/usr/local/bin/{cmd}")  # on the PATH the unit etc. expect
    # Asterisk's user runs notify: the code must be executable by it.
    root.run(
        "setpriv",
        "--reuid=asterisk",
        "--regid=asterisk",
        "--clear-groups",
        "--",
        "faxmail-notify",
        "--help",
    )
    for path, mode, owner in (
        ("/etc/faxmail", 0o750, "root"),
        ("/etc/faxmail/settings.yaml", 0o640, "root"),
        ("/var/lib/faxmail", 0o750, "asterisk"),
        ("/var/spool/asterisk/outgoing", 0o750, "asterisk"),
        ("/var/spool/asterisk/faxmail-staging", 0o750, "asterisk"),
        ("/var/spool/postfix/faxmail", 0o750, "asterisk"),
    ):
        st = root.path(path).stat()
        assert stat.S_IMODE(st.st_mode) == mode, path
        assert name_of(root, st.st_uid) == owner, path
    assert root.path("/usr/local/share/doc/faxmail/README.md").is_file()
    assert "file:///usr/local/share/doc/faxmail/README.md" in root.path(UNIT).read_text()
    # the status page's unit is in place for `systemctl enable --now faxmail-web`
    web_unit = root.path("/usr/local/lib/systemd/system/faxmail-web.service").read_text()
    assert "ExecStart=/usr/local/bin/faxmail web --settings /etc/faxmail/settings.yaml" in web_unit


def test_doctor_passes_on_the_documented_setup(installed: Installed) -> None:
    done = installed.doctor()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert (
        "cleanup/unix (cleanup, chrooted in /var/spool/postfix) reaches the milter" in done.stdout
    )
    assert "smtp/inet" not in done.stdout or "smtpd, chrooted" in done.stdout


def test_milter_from_the_unit_accepts_a_signed_fax(
    installed: Installed, dkim_keys: dict[str, Signer]
) -> None:
    root = installed.root
    sock = root.path(SOCKET).stat()
    assert (name_of(root, sock.st_uid), stat.S_IMODE(sock.st_mode)) == ("asterisk", 0o660)
    mail = build_message(
        from_addr="alice@example.jp",
        to=[FAX],
        subject="quote",
        body="Please fax.\n",
        attachments=[Attachment(make_pdf(1), filename="quote.pdf")],
    )
    code, text = installed.send("alice@example.jp", FAX, dkim_keys["example.jp"].sign(mail))
    assert code == 250, f"{code} {text}\n{installed.milter_log.read_text()[-3000:]}"
    # The daemon's dispatcher places the call just after the 250: wait for it (not a timing
    # assert: 30 s is only how long to wait before failing).
    outgoing = root.path("/var/spool/asterisk/outgoing")
    deadline = time.monotonic() + 30
    while not (calls := list(outgoing.glob("*.call"))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(calls) == 1, installed.milter_log.read_text()[-3000:]
    assert name_of(root, calls[0].stat().st_uid) == "asterisk"
    store = root.path("/var/lib/faxmail/faxmail.sqlite").stat()
    assert stat.S_IMODE(store.st_mode) == 0o640


def test_sendmail_mail_passes_the_chrooted_cleanup(installed: Installed) -> None:
    root = installed.root
    subprocess.run(
        [
            "chroot",
            root.root,
            "/usr/sbin/sendmail",
            "-i",
            "-f",
            "fax-gw@example.jp",
            "root@localhost",
        ],
        input=b"Subject: via sendmail\n\nhello\n",
        check=True,
        timeout=60,
    )
    deadline = time.monotonic() + 60
    while list(root.path("/var/spool/postfix/maildrop").iterdir()) or not _delivered(root):
        assert time.monotonic() < deadline, root.path("/var/log/postfix.log").read_text()[-3000:]
        time.sleep(0.2)


def _delivered(root: DebianRoot) -> bool:
    mbox = root.path("/var/mail/root")
    return mbox.exists() and b"via sendmail" in mbox.read_bytes()


def test_doctor_names_a_socket_postfix_cannot_open(installed: Installed) -> None:
    sock = installed.root.path(SOCKET)
    gid = sock.stat().st_gid
    asterisk_gid = int(installed.root.run("id", "-g", "asterisk").strip())
    os.chown(sock, -1, asterisk_gid)
    try:
        done = installed.doctor()
    finally:
        os.chown(sock, -1, gid)
    assert done.returncode == 1
    assert f"FAIL socket: {SOCKET} is asterisk:asterisk 0660, not group postfix" in done.stdout
    assert "Permission denied: set socket_group: postfix" in done.stdout


def test_doctor_names_a_cleanup_that_looks_outside_its_chroot(installed: Installed) -> None:
    root = installed.root
    root.run("postconf", "-e", f"non_smtpd_milters=unix:{SOCKET}")
    try:
        done = installed.doctor()
    finally:
        root.run("postconf", "-e", "non_smtpd_milters=$smtpd_milters")
    assert done.returncode == 1
    assert (
        f"FAIL postfix: cleanup/unix (cleanup, chrooted in /var/spool/postfix) opens {SOCKET} = "
        f"/var/spool/postfix{SOCKET}, but faxmail-milter listens on {SOCKET}: name it "
        "unix:/faxmail/milter.sock there"
    ) in done.stdout


def test_missing_spool_folder_fails_doctor_and_the_unit_start(installed: Installed) -> None:
    staging = installed.root.path("/var/spool/asterisk/faxmail-staging")
    staging.rmdir()
    try:
        done = installed.doctor()
        pre = unitrun.run_pre(installed.root.root, installed.unit)
    finally:
        installed.root.run(
            "install",
            "-d",
            "-o",
            "asterisk",
            "-g",
            "asterisk",
            "-m",
            "0750",
            "/var/spool/asterisk/faxmail-staging",
        )
    line = (
        "FAIL spool: /var/spool/asterisk/faxmail-staging is missing for asterisk: install -d "
        "-o asterisk -g asterisk -m 0750 /var/spool/asterisk/faxmail-staging"
    )
    assert done.returncode == 1 and line in done.stdout
    assert pre.returncode != 0 and line in pre.stdout


def test_doctor_names_a_bad_settings_key(installed: Installed) -> None:
    path = installed.root.path("/etc/faxmail/settings.yaml")
    good = path.read_text()
    path.write_text(good + "sokcet: unix:/tmp/x\n")
    try:
        done = installed.doctor()
    finally:
        path.write_text(good)
    assert done.returncode == 1
    assert "FAIL settings: /etc/faxmail/settings.yaml: line" in done.stdout
    assert "sokcet: Extra inputs are not permitted" in done.stdout
    assert len(done.stdout.splitlines()) == 1  # nothing else can be checked


def test_install_again_keeps_the_store_and_the_admins_files(installed: Installed) -> None:
    root = installed.root
    policy = root.path("/etc/faxmail/policy.yaml").read_text()
    before = root.path("/var/lib/faxmail/faxmail.sqlite").stat().st_size
    installed.stop_milter()
    installed.install()
    assert root.path("/etc/faxmail/policy.yaml").read_text() == policy
    assert root.path("/var/lib/faxmail/faxmail.sqlite").stat().st_size >= before
    assert len(list(root.path("/opt/faxmail/releases").iterdir())) == 2
    installed.start_milter()
    assert installed.doctor().returncode == 0
