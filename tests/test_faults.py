"""Faults through the real Postfix and daemon: each gives a 4xx (never a 250 without a fax,
never a crash) and the gateway recovers by itself once the fault is removed.

Also a seeded random-SIGKILL run: the daemon is killed at random moments (mid-DATA, while
rendering, while queueing) and restarted while a client retries every mail like an MTA.
``FAXMAIL_KILL_MAILS=200`` gives the long run of issue 6 (CI runs 40).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxmail.asterisk.callfile import parse_callfile
from faxmail.core.crashpoints import POINTS
from infra.constants import BASE_POLICY, FAX
from infra.dkimkeys import Signer, dns_records
from infra.dns import DnsServer
from infra.faxstate import callfiles, final_reply, job_rows, owed_calls, spool_dir
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess, MilterStartError
from infra.pdfs import make_pdf
from infra.postfix import PostfixInstance, SendResult
from infra.protocols import MakePostfix, StartMilter

pytestmark = pytest.mark.postfix

POLICY = (
    BASE_POLICY
    + """\
limits: {per_hour: 100000, per_day: 100000}
"""
)
Gateway = tuple[MilterProcess, PostfixInstance]

_PDF = make_pdf(1)
_counter = iter(range(10**9))


@pytest.fixture
def gateway(start_milter: StartMilter, make_postfix: MakePostfix) -> Gateway:
    milter = start_milter(None, POLICY)
    return milter, make_postfix(milter)


def fax_mail(signer: Signer | None, tag: str | None = None) -> bytes:
    """A one-page fax mail with a fresh Message-ID, DKIM-signed unless ``signer`` is None."""
    tag = tag or f"m{next(_counter)}-{os.getpid()}"
    message = build_message(
        from_addr="alice@example.jp",
        to=[FAX],
        message_id=f"<{tag}@example.jp>",
        attachments=[Attachment(_PDF, filename="a.pdf")],
    )
    return signer.sign(message) if signer is not None else message


def send_fax(postfix: PostfixInstance, signer: Signer | None, tag: str | None = None) -> str:
    return final_reply(postfix.send("alice@example.jp", [FAX], fax_mail(signer, tag)))


def queued_ids(milter: MilterProcess) -> set[str]:
    return {str(job_id) for job_id, state in job_rows(milter) if state == "queued"}


def assert_consistent(milter: MilterProcess) -> None:
    """Every queued job is owed exactly one call (its call file in outgoing/, or waiting in
    faxmail's queue) and every call file has its queued job; nothing half-written in
    outgoing/ or fax/; staging empty."""
    spool = spool_dir(milter)
    assert owed_calls(milter) == sorted(queued_ids(milter))
    assert [p.name for p in (spool / "outgoing").iterdir() if p.suffix != ".call"] == []
    for call in callfiles(milter):
        assert dict(parse_callfile(call.read_bytes()))["Channel"], call
    staging = spool / "faxmail-staging"
    assert [p for p in staging.rglob("*") if not p.is_dir()] == []  # ready/ included
    assert {p.stem for p in (spool / "fax").iterdir()} == queued_ids(milter)
    assert [state for _, state in job_rows(milter) if state == "queueing"] == []


def assert_healthy(milter: MilterProcess, postfix: PostfixInstance, signer: Signer) -> None:
    """The next normal fax mail gets 250 and is owed exactly one more call."""
    before = len(owed_calls(milter))
    reply = send_fax(postfix, signer)
    assert reply.startswith("250"), reply
    assert len(owed_calls(milter)) == before + 1
    assert_consistent(milter)


def wait_for_log(milter: MilterProcess, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in milter.log():
        assert time.monotonic() < deadline, f"{text!r} not logged"
        time.sleep(0.05)


# ---------------------------------------------------------------- DNS


@pytest.mark.parametrize("fault", ["hung", "down"])
def test_dns_fault_is_451_then_250_once_it_answers(
    gateway: Gateway, dns: DnsServer, dkim_keys: dict[str, Signer], fault: str
) -> None:
    milter, postfix = gateway
    # hung: queries pile up unanswered, longer than dns.timeout (2 s); down: nobody listens.
    if fault == "hung":
        dns.pause()
    else:
        dns.stop()
    try:
        started = time.monotonic()
        reply = send_fax(postfix, dkim_keys["example.jp"])
        assert reply.startswith("451 4.7.5"), reply
        assert time.monotonic() - started < 20
    finally:
        if fault == "hung":
            dns.resume()
        else:
            dns.start()
    assert callfiles(milter) == [] and job_rows(milter) == []
    assert_healthy(milter, postfix, dkim_keys["example.jp"])


@pytest.mark.parametrize(
    "lie",
    ["another key", "garbage key", "not a DKIM record", "huge answer", "empty TXT"],
)
def test_dns_lying_is_550_and_no_crash(
    gateway: Gateway, dns: DnsServer, dkim_keys: dict[str, Signer], lie: str
) -> None:
    milter, postfix = gateway
    signer = dkim_keys["example.jp"]
    records = dns_records(dkim_keys)
    records[signer.dns_name] = {
        "another key": dkim_keys["other.example"].key.txt(),
        "garbage key": "v=DKIM1; k=rsa; p=bm90IGEga2V5IGF0IGFsbA==",
        "not a DKIM record": "hello $(id) `id`; rm -rf /",
        "huge answer": "v=DKIM1; k=rsa; p=" + "QUFB" * 4000,  # 16 kB: TCP, many strings
        "empty TXT": "",
    }[lie]
    dns.restart(records)
    reply = send_fax(postfix, signer)
    assert reply.startswith("550 5.7.2"), reply
    assert milter.running()
    assert callfiles(milter) == [] and job_rows(milter) == []
    dns.restart(dns_records(dkim_keys))
    assert_healthy(milter, postfix, signer)


# ---------------------------------------------------------------- the Asterisk spool


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "4m") -> Iterator[None]:
    """A tmpfs mounted over ``path`` (with the spool's sub-folders), always unmounted."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        for sub in ("outgoing", "faxmail-staging", "fax"):
            (path / sub).mkdir()
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full."""
    with open(path, "wb") as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        with contextlib.suppress(OSError):
            os.fsync(out.fileno())


def test_spool_disk_full_is_452_then_recovers(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    spool = spool_dir(milter)
    with small_tmpfs(spool):
        filler = spool / "filler"
        fill(filler)
        reply = send_fax(postfix, dkim_keys["example.jp"])
        assert reply.startswith("452 4.3.1"), reply
        assert callfiles(milter) == [] and queued_ids(milter) == set()
        assert_consistent(milter)  # nothing half-written left in the full spool
        filler.unlink()
        assert_healthy(milter, postfix, dkim_keys["example.jp"])


@pytest.mark.parametrize("folder", ["outgoing", "fax", "faxmail-staging"])
def test_spool_not_writable_is_451_then_recovers(
    gateway: Gateway, dkim_keys: dict[str, Signer], folder: str
) -> None:
    milter, postfix = gateway
    target = spool_dir(milter) / folder
    # We are root: only an immutable folder refuses us.
    subprocess.run(["chattr", "+i", str(target)], check=True)
    try:
        reply = send_fax(postfix, dkim_keys["example.jp"])
        assert reply.startswith("451 4.3.0"), reply
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=True)
    assert callfiles(milter) == [] and queued_ids(milter) == set()
    assert "is not writable" in milter.log()
    assert_healthy(milter, postfix, dkim_keys["example.jp"])


# ---------------------------------------------------------------- faults after admission


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """We are root: only an immutable folder refuses us."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextlib.contextmanager
def moved_away(path: Path) -> Iterator[None]:
    """The Asterisk outgoing folder vanishes (a package upgrade, an admin's mistake)."""
    gone = path.with_name(path.name + ".gone")
    path.rename(gone)
    try:
        yield
    finally:
        gone.rename(path)


@contextlib.contextmanager
def disk_full(spool: Path) -> Iterator[None]:
    filler = spool / "filler"
    fill(filler)
    try:
        yield
    finally:
        filler.unlink()


@contextlib.contextmanager
def store_locked(milter: MilterProcess) -> Iterator[None]:
    """Another process holds SQLite's write lock longer than the store waits (5 s)."""
    db = Path(milter.settings["state_dir"]) / "faxmail.sqlite"
    script = (
        "import sqlite3, sys, time\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield
    finally:
        holder.kill()
        holder.wait()


def paused_daemon(milter: MilterProcess, point: str, workdir: Path) -> Path:
    """Restart the daemon so that it stops at queueing step ``point`` while the returned file
    exists (crashpoints.py); the test creates it to arm the pause."""
    flag = workdir / f"pause-{point}"
    milter.stop()
    milter.env = {**os.environ, "FAXMAIL_PAUSE_AT": point, "FAXMAIL_PAUSE_FILE": str(flag)}
    milter.start()
    return flag


def send_with_fault(
    postfix: PostfixInstance,
    signer: Signer,
    flag: Path,
    fault: contextlib.AbstractContextManager[None],
    stack: contextlib.ExitStack,
    tag: str,
) -> str:
    """Send a fax mail; when the daemon reaches the paused step, start ``fault`` (in ``stack``,
    which removes it) and let the daemon go on into it. Returns the reply."""
    flag.touch()
    here = flag.with_name(flag.name + ".here")
    replies: list[str] = []
    sender = threading.Thread(target=lambda: replies.append(send_fax(postfix, signer, tag)))
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while not here.exists():
            assert time.monotonic() < deadline, "the daemon never reached the pause"
            assert sender.is_alive() or not replies, replies
            time.sleep(0.02)
        stack.enter_context(fault)
    finally:
        flag.unlink(missing_ok=True)
        here.unlink(missing_ok=True)
    sender.join(90)
    assert replies, "no answer"
    return replies[0]


def job_state(milter: MilterProcess, tag: str) -> list[str]:
    rows = job_rows(milter, "state, message_id")
    return [str(state) for state, message_id in rows if message_id == f"<{tag}@example.jp>"]


def assert_nothing_for_asterisk(milter: MilterProcess) -> None:
    spool = spool_dir(milter)
    assert callfiles(milter) == []
    assert list((spool / "outgoing").iterdir()) == []  # no partial file either
    assert list((spool / "fax").iterdir()) == []  # the TIFF and its temporary copy are gone
    assert [p for p in (spool / "faxmail-staging").rglob("*") if not p.is_dir()] == []


def spool_fault(
    spool: Path, where: str, stack: contextlib.ExitStack
) -> contextlib.AbstractContextManager[None]:
    if where == "disk":
        stack.enter_context(small_tmpfs(spool))
        return disk_full(spool)
    if where == "outgoing gone":
        return moved_away(spool / "outgoing")
    return immutable(spool / where)


# (step the daemon is held at, the fault started there, the reply)
AFTER_ADMISSION = {
    "tiff, disk full": ("admitted", "disk", "452 4.3.1"),
    "tiff, fax/ not writable": ("admitted", "fax", "451 4.3.0"),
}


@pytest.mark.parametrize("case", list(AFTER_ADMISSION))
def test_fault_after_admission_is_4xx_and_leaves_nothing(
    gateway: Gateway, dkim_keys: dict[str, Signer], workdir: Path, case: str
) -> None:
    """Faults that start after the job row was admitted and before the fax is queued: a 4xx,
    no call file and no partial file anywhere, the row abandoned; then the mail, sent again
    once the fault is gone, is faxed exactly once."""
    milter, postfix = gateway
    signer = dkim_keys["example.jp"]
    point, where, expected = AFTER_ADMISSION[case]
    spool = spool_dir(milter)
    flag = paused_daemon(milter, point, workdir)
    with contextlib.ExitStack() as stack:
        fault = spool_fault(spool, where, stack)
        reply = send_with_fault(postfix, signer, flag, fault, stack, tag=f"fault-{point}")
        assert reply.startswith(expected), reply
        assert job_state(milter, f"fault-{point}") == ["abandoned"]
        assert milter.running()
        if where != "outgoing gone":
            assert_nothing_for_asterisk(milter)
        stack.close()  # the fault is removed
        assert_nothing_for_asterisk(milter)
        # the sender's retry of the same mail, then a new one
        assert send_fax(postfix, signer, f"fault-{point}").startswith("250")
        assert len(callfiles(milter)) == 1
        assert sorted(job_state(milter, f"fault-{point}")) == ["abandoned", "queued"]
        assert_healthy(milter, postfix, signer)
        assert len(owed_calls(milter)) == 2


# The dispatcher's faults: the mail was queued (250; the milter writes no call file), then
# placing its call meets the fault. (step the daemon is held at, the fault started there)
# (A full spool disk meets the TIFF first: the 452 above.)
AT_DISPATCH = {
    "call file, staging not writable": ("tiff-placed", "faxmail-staging"),
    "outgoing gone before the call file": ("tiff-placed", "outgoing gone"),
    "rename, outgoing not writable": ("dispatch-staged", "outgoing"),
    "rename, outgoing gone": ("dispatch-staged", "outgoing gone"),
}


@pytest.mark.parametrize("case", list(AT_DISPATCH))
def test_fault_at_dispatch_holds_the_call_until_it_is_gone(
    gateway: Gateway, dkim_keys: dict[str, Signer], workdir: Path, case: str
) -> None:
    """A spool fault while the dispatcher places a call: the sender had the 250 and the job
    stays queued, no call file and no partial file anywhere while the fault lasts; once it is
    removed the dispatcher places exactly one call (it retries by itself)."""
    milter, postfix = gateway
    signer = dkim_keys["example.jp"]
    point, where = AT_DISPATCH[case]
    spool = spool_dir(milter)
    flag = paused_daemon(milter, point, workdir)
    with contextlib.ExitStack() as stack:
        fault = spool_fault(spool, where, stack)
        if point.startswith("dispatch-"):  # the dispatcher's thread stops there, after the 250
            flag.touch()
            reply = send_fax(postfix, signer, f"dispatch-{point}")
            here = flag.with_name(flag.name + ".here")
            deadline = time.monotonic() + 60
            while not here.exists():
                assert time.monotonic() < deadline, "the dispatcher never reached the pause"
                time.sleep(0.02)
            stack.enter_context(fault)
            flag.unlink()
            here.unlink()
        else:
            reply = send_with_fault(postfix, signer, flag, fault, stack, tag=f"dispatch-{point}")
        assert reply.startswith("250"), reply
        assert job_state(milter, f"dispatch-{point}") == ["queued"]
        time.sleep(4)  # the dispatcher tries again (at least every 3 s) into the fault
        assert milter.running()
        if where != "outgoing gone":
            assert callfiles(milter, timeout=0) == []
            assert list((spool / "outgoing").iterdir()) == []
        stack.close()  # the fault is removed
    assert len(callfiles(milter)) == 1
    assert job_state(milter, f"dispatch-{point}") == ["queued"]
    assert_consistent(milter)


@pytest.mark.parametrize("point", [p for p in POINTS if p.startswith("dispatch-")])
def test_kill_at_each_dispatch_step_places_the_call_exactly_once(
    gateway: Gateway, dkim_keys: dict[str, Signer], point: str
) -> None:
    """kill -9 between stage, claim and publish: after the restart's repair the job has
    exactly one call file (never none, never two) and staging is empty."""
    milter, postfix = gateway
    kill_and_restart(milter, point)
    reply = send_fax(postfix, dkim_keys["example.jp"], f"kill-{point}")
    deadline = time.monotonic() + 30
    while milter.running():  # the dispatcher reaches the point just after queueing
        assert time.monotonic() < deadline, f"the daemon never reached {point}"
        time.sleep(0.05)
    kill_and_restart(milter)
    if not reply.startswith("250"):  # killed before the reply: the sender tries again
        assert send_fax(postfix, dkim_keys["example.jp"], f"kill-{point}").startswith("250")
    assert job_state(milter, f"kill-{point}") == ["queued"]
    (call,) = callfiles(milter)
    assert call.name.startswith(queued_ids(milter).pop())
    assert_consistent(milter)


def test_store_failing_at_the_final_update_is_451_and_the_retry_is_faxed(
    gateway: Gateway, dkim_keys: dict[str, Signer], workdir: Path
) -> None:
    """The TIFF is in place, the store cannot record "queued": Asterisk must see nothing.

    Regression: the row stayed "queueing" (its "abandoned" cannot be written either while the
    store fails), and the sender's retry was taken for a duplicate of it: 250, no fax.
    """
    milter, postfix = gateway
    signer = dkim_keys["example.jp"]
    flag = paused_daemon(milter, "tiff-placed", workdir)
    with contextlib.ExitStack() as stack:
        fault = store_locked(milter)
        reply = send_with_fault(postfix, signer, flag, fault, stack, tag="store-final")
        assert reply.startswith("451 4.3.0"), reply
        assert_nothing_for_asterisk(milter)
    # the lock is gone; the row could not be settled while it was held
    assert job_state(milter, "store-final") == ["queueing"]
    assert send_fax(postfix, signer, "store-final").startswith("250")  # the sender's retry
    assert sorted(job_state(milter, "store-final")) == ["abandoned", "queued"]
    assert len(owed_calls(milter)) == 1
    assert_healthy(milter, postfix, signer)


# ---------------------------------------------------------------- Ghostscript


def path_without_gs(into: Path) -> str:
    """A folder of symlinks to every program on PATH except Ghostscript."""
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name in ("gs", "gsc", "gsx", "gsnd") or (into / name).exists():
                continue
            with contextlib.suppress(OSError):
                (into / name).symlink_to(os.path.join(folder, name))
    return str(into)


def test_ghostscript_missing_is_451_never_250(
    gateway: Gateway, dkim_keys: dict[str, Signer], workdir: Path
) -> None:
    milter, postfix = gateway
    milter.stop()
    milter.env = {**os.environ, "PATH": path_without_gs(workdir)}
    milter.start()
    for _ in range(2):
        reply = send_fax(postfix, dkim_keys["example.jp"])
        assert reply.startswith("451 4.3.0"), reply
    assert callfiles(milter) == [] and job_rows(milter) == []
    assert list((Path(milter.settings["state_dir"]) / "work").iterdir()) == []
    milter.stop()
    milter.env = None
    milter.start()
    assert_healthy(milter, postfix, dkim_keys["example.jp"])


def test_ghostscript_hanging_is_451_never_a_bounce(
    start_milter: StartMilter,
    make_postfix: MakePostfix,
    dkim_keys: dict[str, Signer],
    workdir: Path,
) -> None:
    # A hung gs looks like an endless document (552) until the blank test page hangs too.
    policy = POLICY + "fax: {render_timeout_s: 2, render_timeout_per_page_s: 0}\n"
    milter = start_milter(None, policy)
    postfix = make_postfix(milter)
    fake = workdir / "hung-gs"
    fake.mkdir()
    (fake / "gs").write_text("#!/bin/sh\nexec sleep 617\n")
    (fake / "gs").chmod(0o755)
    milter.stop()
    milter.env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    milter.start()
    reply = send_fax(postfix, dkim_keys["example.jp"])
    assert reply.startswith("451 4.3.0"), reply
    assert callfiles(milter) == [] and job_rows(milter) == []
    assert subprocess.run(["pgrep", "-fx", "sleep 617"]).returncode == 1  # killed, not left
    milter.stop()
    milter.env = None
    milter.start()
    assert_healthy(milter, postfix, dkim_keys["example.jp"])


# ---------------------------------------------------------------- SQLite


def test_sqlite_locked_by_another_process_is_451_then_recovers(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    db = Path(milter.settings["state_dir"]) / "faxmail.sqlite"
    with store_locked(milter):
        reply = send_fax(postfix, dkim_keys["example.jp"])  # the store waits 5 s, then gives up
        assert reply.startswith("451 4.3.0"), reply
        assert milter.running()
    assert callfiles(milter) == [] and job_rows(milter) == []
    assert_healthy(milter, postfix, dkim_keys["example.jp"])
    # The store itself is intact.
    with contextlib.closing(sqlite3.connect(db)) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# ---------------------------------------------------------------- the policy file


def test_policy_file_broken_emptied_deleted_while_mail_flows(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    policy = Path(milter.settings["policy"])
    signer = dkim_keys["example.jp"]
    stop = threading.Event()
    flowing: list[str] = []

    def ordinary_mail() -> None:  # mail keeps flowing the whole time
        message = build_message(from_addr="carol@other.example", to=["bob@example.jp"])
        while not stop.is_set():
            result = postfix.send("carol@other.example", ["bob@example.jp"], message)
            flowing.append(final_reply(result))

    def replace(text: str | None) -> None:
        if text is None:
            policy.unlink()
        else:
            fresh = policy.with_name("policy.new")
            fresh.write_text(text)
            stamp = time.time() + 2 + len(flowing)  # a visibly new mtime
            os.utime(fresh, (stamp, stamp))
            fresh.replace(policy)
        time.sleep(1.1)  # the daemon looks at the file at most once a second

    background = threading.Thread(target=ordinary_mail)
    background.start()
    try:
        for text, logged in [
            ("senders: [broken", "not valid YAML"),
            ("\0\xff garbage: {{{", "keeping the last good policy"),
            ("", "is empty; keeping the last good policy"),
            ("senders: 42\n", "keeping the last good policy"),
            (None, "is gone; keeping the last good policy"),
        ]:
            replace(text)
            reply = send_fax(postfix, signer)
            assert reply.startswith("250"), (text, reply)
            wait_for_log(milter, logged)
        # A good edit still takes effect afterwards.
        replace(POLICY + "destinations: {deny: ['+813']}\n")
        result = postfix.send("alice@example.jp", [FAX], fax_mail(signer))
        assert result.rcpts[FAX].code == 550 and "denied by the policy" in result.rcpts[FAX].text
    finally:
        stop.set()
        background.join(60)
    assert flowing and all(r.startswith("250") for r in flowing), flowing
    assert len(owed_calls(milter)) == 5
    assert_consistent(milter)


# ---------------------------------------------------------------- random SIGKILL


SIGKILL_LINES = """\
lines: [{name: trunk, channel: "PJSIP/{number}@trunk", channels: 1000}]
"""


def final_code(result: SendResult) -> int:
    """The answer that decides the mail's fate (DATA's, else the failing RCPT's or MAIL's)."""
    if result.data is not None:
        return result.data.code
    if result.rcpts:
        return max(r.code for r in result.rcpts.values())
    return result.mail.code


def kill_and_restart(milter: MilterProcess, crash_at: str | None = None) -> None:
    """SIGKILL the daemon (and its gs) and start it again, optionally armed to kill itself
    at a queueing step (crashpoints.py) on the next fax."""
    assert milter.proc is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(milter.proc.pid, signal.SIGKILL)
    milter.proc.wait(10)
    milter.env = None if crash_at is None else {**os.environ, "FAXMAIL_CRASH_AT": crash_at}
    try:
        milter.start()  # repair() runs before it listens
    except MilterStartError:
        if crash_at is None or not crash_at.startswith("dispatch-"):
            raise
        # A call was waiting: the dispatcher placed it at once and died at the armed point,
        # before the harness saw the socket. That was the kill; start it again.
        milter.env = None
        milter.start()


def test_random_sigkill_loses_and_duplicates_nothing(
    gateway: Gateway, dkim_keys: dict[str, Signer]
) -> None:
    milter, postfix = gateway
    # Each mail to its own number, on a line with a channel for each: the dispatcher places
    # every accepted job's call (no Asterisk here ends one), so its steps are killed too.
    Path(milter.settings["policy"]).write_text(POLICY + SIGKILL_LINES)
    kill_and_restart(milter)
    signer = dkim_keys["example.jp"]
    rng = random.Random(6)  # fixed seed: the same kills every run
    count = int(os.environ.get("FAXMAIL_KILL_MAILS", "40"))
    # Bigger mails for a longer DATA phase: the kill lands mid-DATA sometimes.
    padding = "Please fax this.\n" * 120_000  # 2 MB of body text
    outcome: dict[str, int] = {}
    kills = 0
    for n in range(count):
        tag = f"kill{n}"
        signed = rng.random() > 0.15  # some mails are refused for good (5xx): never a job
        fax = f"fax+0312{n:06d}@example.jp"
        message = build_message(
            from_addr="alice@example.jp",
            to=[fax],
            message_id=f"<{tag}@example.jp>",
            body=padding if rng.random() < 0.2 else "Please fax this.\n",
            attachments=[Attachment(_PDF, filename="a.pdf")],
        )
        if signed:
            message = signer.sign(message)
        for attempt in range(20):
            results: list[SendResult] = []
            sender = threading.Thread(
                target=lambda m=message, out=results, to=fax: out.append(
                    postfix.send("alice@example.jp", [to], m)
                )
            )
            sender.start()
            if rng.random() < 0.4:
                # Random moments: mid-DATA, DKIM, rendering, queueing or after the answer;
                # and now and then the next start is armed to die at an exact queueing step.
                time.sleep(rng.uniform(0, 0.6))
                armed = rng.choice(POINTS) if rng.random() < 0.3 else None
                kill_and_restart(milter, armed)
                kills += 1
            sender.join(120)
            if not milter.running():  # died at its armed crash point
                kill_and_restart(milter)
                kills += 1
            assert results, f"mail {n} attempt {attempt}: no answer"
            code = final_code(results[0])
            if code < 400 or code >= 500:
                outcome[tag] = code
                break
            assert code in (421, 450, 451), results[0]
        else:
            pytest.fail(f"mail {n}: no final answer after 20 attempts")
        assert (outcome[tag] == 250) == signed, (n, outcome[tag])
    kill_and_restart(milter)  # a last repair, as after any crash
    assert kills >= count // 5
    rows = job_rows(milter, "id, state, message_id")
    queued = [(str(i), str(m)) for i, s, m in rows if s == "queued"]
    accepted = {f"<{tag}@example.jp>" for tag, code in outcome.items() if code == 250}
    # Every mail that got 250 has exactly one queued job; every other mail has none.
    assert sorted(m for _, m in queued) == sorted(accepted)
    assert {s for _, s, _ in rows} <= {"queued", "abandoned"}
    abandoned = sum(1 for _, s, _ in rows if s == "abandoned")
    print(f"\nsigkill: {count} mails, {kills} kills, {len(queued)} queued, {abandoned} abandoned")
    assert_consistent(milter)
    # every queued job's call placed exactly once: one call file each, none twice
    assert sorted(p.name.split(".")[0] for p in callfiles(milter)) == sorted(i for i, _ in queued)
    assert not list(Path(milter.settings["state_dir"], "work").iterdir())
    assert_healthy(milter, postfix, signer)


def test_small_tmpfs_helper_always_unmounts() -> None:
    """Guard for the helpers above: the mount point helper never leaks a mount."""
    with tempfile.TemporaryDirectory() as d:
        with small_tmpfs(Path(d), "1m"):
            assert os.path.ismount(d)
        assert not os.path.ismount(d)
