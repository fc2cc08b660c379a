"""The job commands (`faxmail jobs|show|cancel|resend|stats`), run as the admin runs them — as
processes — against a job store filled the real way: signed mail through Postfix and the
milter, Asterisk's outcomes through the shipped dialplan's faxmail-notify lines, result mails
delivered by Postfix."""

from __future__ import annotations

import email
import email.policy
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import attach_log
from faxmail.asterisk.callfile import parse_callfile
from faxmail.asterisk.spool import PARKING
from faxmail.store.model import COUNTED_STATES, RateLimits
from faxmail.store.sqlite import SqliteStore
from infra.dkimkeys import Signer
from infra.faxstate import callfiles
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.pdfs import make_pdf
from infra.postfix import PostfixInstance
from infra.protocols import MakePostfix, StartMilter
from test_notify_dialplan import Dialplan
from test_notify_received import reception
from test_notify_sent import channel
from test_notify_support import fax_tiff
from test_store import unknown_words

pytestmark = pytest.mark.postfix

BIN = Path(sys.executable).parent
ALICE, BOB = "alice@example.jp", "bob@example.jp"
POLICY = """\
language: en
fax_address: {domains: [example.jp]}
senders:
  - address: "@example.jp"
notify:
  from_address: "FAX Gateway <fax-gw@example.jp>"
  keep_sent_tiff_days: 7
inbound:
  routes:
    "0312345678": [sales@example.jp]
lines:  # enough channels that every job to its own number is dialled at once
  - {name: trunk, channel: "PJSIP/{number}@trunk", channels: 10}
retry:
  max_busy_attempts: 0  # busy counts as a real try: three calls (fax.max_retries 2)
"""


@dataclass
class Site:
    """A gateway as installed: the milter behind Postfix, notify and the admin command."""

    milter: MilterProcess
    postfix: PostfixInstance
    signer: Signer
    root: Path

    @property
    def settings(self) -> Path:
        return self.root / "settings.yaml"

    @property
    def outgoing(self) -> Path:
        return self.root / "asterisk" / "outgoing"

    def faxmail(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "faxmail"), *args, "--settings", str(self.settings)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "TZ": "Asia/Tokyo"},
        )

    def json(self, *args: str) -> Any:
        ran = self.faxmail(*args, "--json")
        assert ran.returncode == 0, ran.stderr
        return json.loads(ran.stdout)

    def send(self, sender: str, number: str, pages: int = 1, message_id: str | None = None) -> str:
        """A signed fax mail through Postfix; the job id the milter queued it as."""
        fax = f"fax+{number}@example.jp"
        message = build_message(
            from_addr=sender,
            to=[fax],
            subject=f"{pages}-page fax to {number}",
            attachments=[Attachment(make_pdf(pages), filename="doc.pdf")],
            message_id=message_id,
        )
        result = self.postfix.send(sender, [fax], self.signer.sign(message))
        assert result.data is not None and result.data.code == 250, result
        rows = self.rows("SELECT id FROM jobs WHERE sender = ? ORDER BY created DESC", sender)
        self.dispatched()
        return str(rows[0][0])

    def dispatched(self) -> list[Path]:
        """The call files once the daemon's dispatcher placed what it can (after the 250)."""
        return callfiles(self.milter)

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.root / "state" / "faxmail.sqlite")
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def state(self, job_id: str) -> str:
        return str(self.rows("SELECT state FROM jobs WHERE id = ?", job_id)[0][0])

    # Asterisk's side, as the shipped dialplan reports it to faxmail-notify.
    def dialplan(self) -> Dialplan:
        return Dialplan(
            {
                "FAXMAIL_NOTIFY": str(BIN / "faxmail-notify"),
                "FAXMAIL_SETTINGS": str(self.settings),
                "FAXMAIL_INBOX": str(self.root / "inbox"),
            }
        )

    # Each call file faxmail places is one attempt; FAXMAIL_ROUND says which call it is.
    def fax_sent(self, job_id: str, attempt: int = 1, **fax: str) -> None:
        plan = self.dialplan()
        call = {"FAXMAIL_ROUND": str(attempt)}
        assert plan.run("faxmail-send", "send", {**channel(job_id), **call}).code == 0
        assert plan.run("faxmail-send", "h", {**channel(job_id, **fax), **call}).code == 0
        self.dispatched()

    def unanswered(self, job_id: str, attempt: int, reason: str) -> None:
        values = {
            "FAXMAIL_JOB": job_id,
            "FAXMAIL_ROUND": str(attempt),
            "AST_OUTGOING_ATTEMPT": "1",
            "REASON": reason,
        }
        ran = self.dialplan().run("faxmail-send", "failed", values)
        assert ran.code in (0, 75), ran
        self.dispatched()

    def mails(self, address: str, count: int = 1) -> list[email.message.EmailMessage]:
        raws = self.postfix.wait_for_delivery(address, count)
        return [email.message_from_bytes(raw, policy=email.policy.default) for raw in raws]


@pytest.fixture
def site(
    request: pytest.FixtureRequest,
    start_milter: StartMilter,
    make_postfix: MakePostfix,
    dkim_keys: dict[str, Signer],
) -> Iterator[Site]:
    milter = start_milter(None, POLICY)
    postfix = make_postfix(milter)
    root = Path(milter.settings["asterisk"]["spool_dir"]).parent
    (root / "inbox").mkdir()
    # notify and the admin command read the same settings file as the daemon, plus how
    # notify hands mail over (to this Postfix) and where received faxes arrive.
    settings = {
        **milter.settings,
        "mail": {"transport": "smtp", "host": "127.0.0.1", "port": postfix.port},
        "notify": {"inbox_dir": str(root / "inbox"), "log_file": str(root / "notify.log")},
    }
    (root / "settings.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True))
    attach_log(request, "faxmail-notify log", lambda: (root / "notify.log").read_text())
    yield Site(milter, postfix, dkim_keys["example.jp"], root)
    # Whatever the story, the store holds only the enums' words.
    assert unknown_words(root / "state" / "faxmail.sqlite") == []


def pbx_append(callfile: Path, kind: str, attempt: int, at: float) -> None:
    """What pbx_spool's safe_append() does: a line, then utime (RetryTime 300 later)."""
    with open(callfile, "a") as handle:
        handle.write(f"\n{kind}: {os.getpid()} {attempt} ({int(at)})\n")
    os.utime(callfile, (at, at + 300))


def old(site: Site, job_id: str) -> None:
    """Age a fresh call file, as if Asterisk had had it for a minute and not dialled yet (no
    Asterisk runs here): cancel need not wait for pbx_spool's first look."""
    (path,) = [p for p in site.dispatched() if p.name == f"{job_id}.call"]
    then = time.time() - 60
    os.utime(path, (then, then))


# --- jobs -----------------------------------------------------------------------------------


def test_jobs_lists_queued_sent_and_failed_jobs(site: Site) -> None:
    sent = site.send(ALICE, "0312345678", pages=2)
    failed = site.send(ALICE, "0612345678")
    queued = site.send(BOB, "03-1234-5678", message_id="<same@example.jp>")
    site.fax_sent(sent, FAXPAGES="2")
    for attempt, reason in ((1, "5"), (2, "8"), (3, "3")):  # busy, congestion, no answer
        site.unanswered(failed, attempt, reason)
    site.mails(ALICE, 2)

    ran = site.faxmail("jobs")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].split() == [
        "JOB", "QUEUED", "SENDER", "NUMBER", "PAGES", "STATE", "TRIES", "LAST", "RESULT"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:4]] == [queued, failed, sent]  # newest first
    # Its number's call (the `sent` job's) has ended: the dispatcher placed it.
    assert "waiting for Asterisk" in lines[1] and "03-1234-5678" in lines[1]
    assert "failed" in lines[2] and "no answer (attempt 3)" in lines[2]
    assert "sent" in lines[3] and "fax sent, 2 page(s), 14400 bit/s" in lines[3]
    # Aligned: every row's STATE starts in the header's STATE column; times are local (JST).
    column = lines[0].index("STATE")
    assert all(line[column:].split()[0] in ("queued", "failed", "sent") for line in lines[1:4])
    assert "times in JST (+0900)" in lines[-1]
    assert "\x1b[" not in ran.stdout  # no colour into a pipe

    listed = site.json("jobs")
    assert listed["more"] is False
    by_id = {job["id"]: job for job in listed["jobs"]}
    assert by_id[sent]["state"] == "sent" and by_id[sent]["attempts"] == 1
    assert by_id[failed]["attempts"] == 3 and by_id[failed]["result_mail"]["outcome"] == "failed"
    assert by_id[queued]["created"].endswith("+09:00")
    assert by_id[queued]["number_e164"] == "+81312345678" and by_id[queued]["sender"] == BOB

    def ids(*args: str) -> list[str]:
        return [job["id"] for job in site.json("jobs", *args)["jobs"]]

    assert ids("--state", "failed") == [failed]
    assert ids("--state", "sent,failed") == [failed, sent]
    assert ids("--sender", BOB) == [queued]
    assert ids("--sender", "@example.jp") == [queued, failed, sent]
    assert ids("--number", "+81-3-1234-5678") == [queued, sent]  # any notation
    assert ids("--number", "612345") == [failed]  # digits it contains
    assert ids("--since", "1h") == [queued, failed, sent]
    assert ids("--since", "2999-01-01") == []
    assert ids("--limit", "1") == [queued]
    assert site.json("jobs", "--limit", "1")["more"] is True
    # The same mail again: 250, not faxed twice; the job is listed as having a duplicate.
    assert site.send(BOB, "03-1234-5678", message_id="<same@example.jp>") == queued
    assert ids("--state", "duplicate") == [queued]

    bad = site.faxmail("jobs", "--state", "lost")
    assert bad.returncode == 2 and "states are" in bad.stderr


# --- show -----------------------------------------------------------------------------------


def test_show_tells_the_story_of_one_job(site: Site) -> None:
    job_id = site.send(ALICE, "0312345678", pages=2)
    site.unanswered(job_id, 1, "5")
    site.fax_sent(job_id, 2, FAXPAGES="2", FAXMODE="audio", FAXBITRATE="9600")
    (mail,) = site.mails(ALICE)
    assert mail["Subject"].startswith("Fax sent:")

    ran = site.faxmail("show", job_id[:6])  # a unique start is enough
    assert ran.returncode == 0, ran.stderr
    text = ran.stdout
    for fact in (
        f"job {job_id}: sent (fax sent, 2 page(s), 9600 bit/s)",
        "from        alice@example.jp (envelope alice@example.jp, Reply-To -)",
        "number      0312345678 = +81312345678, dialled 0312345678",
        "proof       dkim: a valid DKIM signature of example.jp, aligned with From:",
        "policy      senders[0]: @example.jp, proof dkim (the policy as it reads now)",
        "pages       2, rendered in",
        "(present)",
        "min per call at 14400 bit/s (estimate)",
        f"call file ({job_id}-r2.call)",  # each call its own file; call 2 was the last
        "unanswered  busy",
        "success     2 page(s), 9600 bit/s, fine (204x196 dpi), audio (G.711), station",
        "sent, claimed",
        "handed over",
        "to alice@example.jp",
        "accepted",
        "fax-sent",
    ):
        assert fact in text, f"{fact!r} not in:\n{text}"

    detail = site.json("show", job_id)
    assert set(detail) == {
        "job", "decision", "rendering", "callfile", "attempts", "line_seconds_estimate",
        "result_mail", "events",
    }  # fmt: skip
    assert detail["decision"]["policy_entry"] == {
        "index": 0,
        "address": "@example.jp",
        "sasl_user": None,
        "proof": ["dkim"],
    }
    assert [a["outcome"] for a in detail["attempts"]] == ["unanswered", "answered", "success"]
    assert detail["result_mail"]["delivered"] is not None
    assert detail["result_mail"]["to"] == [ALICE]
    assert detail["rendering"]["tiff_bytes"] > 0 and detail["line_seconds_estimate"] > 13

    missing = site.faxmail("show", "0000000000000000")
    assert missing.returncode == 1
    assert missing.stderr.startswith("faxmail show: no job 0000000000000000 in ")
    assert site.faxmail("show", "not-a-job").returncode == 1


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_takes_the_call_back_and_tells_the_sender_once(site: Site) -> None:
    job_id = site.send(BOB, "0312345678")
    callfile = site.outgoing / f"{job_id}.call"
    assert callfile.exists()
    old(site, job_id)
    started = time.monotonic()
    ran = site.faxmail("cancel", job_id)
    assert ran.returncode == 0, ran.stderr
    assert time.monotonic() - started < 10
    assert ran.stdout.splitlines() == [
        f"job {job_id} to 0312345678 cancelled: its call file was taken out of Asterisk's"
        " queue before it was dialled.",
        "result mail to bob@example.jp: handed over",
    ]
    assert not callfile.exists()
    assert list((site.root / "asterisk" / "faxmail-staging" / PARKING).iterdir()) == []
    assert site.state(job_id) == "cancelled"
    (mail,) = site.mails(BOB)
    assert mail["Subject"] == "[CANCELLED] Fax not sent: 1-page fax to 0312345678"
    body = mail.get_body(("plain",))
    assert body is not None
    assert "was cancelled by the administrator" in body.get_content()

    # A cancelled fax does not count against the sender's rate limit.
    assert "cancelled" not in COUNTED_STATES
    store = SqliteStore(site.root / "state" / "faxmail.sqlite")
    try:
        assert store.rate_exceeded(BOB, RateLimits(per_hour=1, per_day=None), time.time()) is None
    finally:
        store.close()

    assert "cancelled before dialling" in site.faxmail("jobs").stdout
    # Asterisk reporting a call anyway (it cannot, without its file) sends no second mail,
    # and the admin sees it.
    site.fax_sent(job_id)
    site.postfix.wait_for_empty_queue()
    assert len(site.postfix.messages(BOB)) == 1
    assert site.state(job_id) == "cancelled"
    assert "yet Asterisk reported a call after that" in site.faxmail("jobs").stdout

    again = site.faxmail("cancel", job_id)
    assert again.returncode == 1
    assert again.stderr == (
        f"faxmail cancel: job {job_id} was cancelled already; nothing was changed\n"
    )


def test_waiting_jobs_show_their_place_and_are_cancelled_without_a_call_file(site: Site) -> None:
    first = site.send(ALICE, "0312345678")
    second = site.send(BOB, "0312345678")  # the same number: waits until the first call ends
    third = site.send(BOB, "03-1234-5678")
    assert [p.name for p in site.dispatched()] == [f"{first}.call"]
    listed = {job["id"]: job for job in site.json("jobs")["jobs"]}
    assert listed[first]["queue"] is None  # dialling
    assert {k: listed[second]["queue"][k] for k in ("line", "place", "waiting", "call")} == {
        "line": "trunk",
        "place": 1,
        "waiting": 2,
        "call": 1,
    }
    assert listed[third]["queue"]["place"] == 2
    assert listed[second]["queue"]["next_call"].endswith("+09:00")
    text = site.faxmail("jobs").stdout
    assert "waiting: 2 of 2 on line trunk, call 1 when the line is free" in text, text

    ran = site.faxmail("cancel", second)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[0] == (
        f"job {second} to 0312345678 cancelled: it was waiting in faxmail's queue (no call file)."
    )
    assert site.state(second) == "cancelled"
    (mail,) = site.mails(BOB)
    assert mail["Subject"].startswith("[CANCELLED]")
    # The first call ends: the next job for that number (not the cancelled one) is dialled.
    site.fax_sent(first)
    assert sorted(p.name for p in site.dispatched()) == sorted([f"{first}.call", f"{third}.call"])


def test_cancel_is_refused_while_asterisk_dials_and_after_the_fax(site: Site) -> None:
    dialling = site.send(ALICE, "0312345678")
    sent = site.send(ALICE, "0612345678")
    site.fax_sent(sent)
    # Asterisk picked the first one up: pbx_spool appended its StartRetry line and dials.
    callfile = site.outgoing / f"{dialling}.call"
    pbx_append(callfile, "StartRetry", 1, time.time() + 300)
    before = callfile.read_bytes()
    ran = site.faxmail("cancel", dialling)
    assert ran.returncode == 1
    assert "was not cancelled: Asterisk is dialling it now (attempt 1 of 1" in ran.stderr
    assert callfile.read_bytes() == before and site.state(dialling) == "queued"
    assert dict(parse_callfile(before))["Channel"] == "PJSIP/0312345678@trunk"
    shown = site.faxmail("show", dialling).stdout
    assert "in outgoing/: Asterisk is dialling it (1 of 1 attempts" in shown
    # The call ended unanswered: its next call waits in faxmail's queue, and is cancelled
    # there (no call file to take back).
    pbx_append(callfile, "EndRetry", 1, time.time())
    site.unanswered(dialling, 1, "5")
    assert site.faxmail("cancel", dialling).returncode == 0
    assert "cancelled after 1 attempt(s)" in site.faxmail("jobs").stdout

    done = site.faxmail("cancel", sent)
    assert done.returncode == 1
    assert done.stderr == f"faxmail cancel: job {sent} was sent already; nothing was changed\n"


# --- resend ---------------------------------------------------------------------------------


def test_resend_checks_the_number_against_the_policy_as_now(site: Site) -> None:
    failed = site.send(ALICE, "0612345678", pages=2)
    for attempt in (1, 2, 3):
        site.unanswered(failed, attempt, "5")
    site.mails(ALICE)
    files = sorted(site.outgoing.glob("*.call"))

    premium = site.faxmail("resend", failed, "--number", "0990123456")
    assert premium.returncode == 1
    assert premium.stderr == (
        "faxmail resend: refused: 550 5.7.1 fax number +81990123456 is not allowed (premium rate)\n"
    )
    # The policy now forbids the job's own number: refused with the milter's own words.
    policy = Path(site.milter.settings["policy"])
    policy.write_text(POLICY + "destinations:\n  deny: ['+8161']\n")
    ran = site.faxmail("resend", failed)
    assert ran.returncode == 1
    refusal = ran.stderr.removeprefix("faxmail resend: refused: ").strip()
    assert refusal == "550 5.7.1 fax number +81612345678 is not allowed (denied by the policy)"
    fax = "fax+0612345678@example.jp"
    deadline = time.monotonic() + 10
    while True:  # the daemon notices the edited policy within a second
        result = site.postfix.send(ALICE, [fax], b"Subject: x\r\n\r\nx\r\n")
        if result.rcpts[fax].code == 550 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert f"{result.rcpts[fax].code} {result.rcpts[fax].text}" == refusal
    assert sorted(site.outgoing.glob("*.call")) == files  # nothing queued

    policy.write_text(POLICY)
    ran = site.faxmail("resend", failed)
    assert ran.returncode == 0, ran.stderr
    new = ran.stdout.split()[1]
    assert ran.stdout == (
        f"job {new} queued: a resend of {failed} to 0612345678 (+81612345678), 2 page(s);"
        " its result mail goes to alice@example.jp.\n"
    )
    (callfile,) = [p for p in site.dispatched() if p.name == f"{new}.call"]
    values = dict(
        v.split("=", 1) for k, v in parse_callfile(callfile.read_bytes()) if k == "Setvar"
    )
    assert values["FAXMAIL_JOB"] == new and values["FAXNUMBER"] == "0612345678"
    assert (
        Path(values["FAXFILE"]).read_bytes()
        == (site.root / "asterisk" / "fax" / f"{failed}.tif").read_bytes()
    )
    assert site.json("show", new)["job"]["resend_of"] == failed
    assert site.json("show", failed)["job"]["resent_as"] == [new]
    assert f"resent as {new}" in site.faxmail("jobs").stdout

    twice = site.faxmail("resend", failed)
    assert twice.returncode == 1
    assert f"job {new}, a resend of {failed}, is still queued" in twice.stderr
    busy = site.faxmail("resend", new)
    assert busy.returncode == 1 and "is still queued" in busy.stderr

    # To another number; after its own result the sender hears about it once more.
    site.fax_sent(new)
    assert len(site.mails(ALICE, 2)) == 2
    other = site.faxmail("resend", failed, "--number", "03-1234-5678")
    assert other.returncode == 0, other.stderr
    assert "to 03-1234-5678 (+81312345678)" in other.stdout

    Path(site.rows("SELECT tiff FROM jobs WHERE id = ?", new)[0][0]).unlink()
    gone = site.faxmail("resend", new)
    assert gone.returncode == 1 and "notify.keep_sent_tiff_days" in gone.stderr


# --- stats ----------------------------------------------------------------------------------


def test_stats_per_sender_and_destination(site: Site) -> None:
    sent = site.send(ALICE, "0312345678", pages=2)
    failed = site.send(ALICE, "0612345678")
    cancelled = site.send(BOB, "0312345678")
    site.unanswered(sent, 1, "5")
    site.fax_sent(sent, 2, FAXPAGES="2", FAXBITRATE="9600")
    site.fax_sent(failed, FAXSTATUS="FAILED", FAXERROR="TRAINING_ERROR", FAXPAGES="0")
    old(site, cancelled)
    assert site.faxmail("cancel", cancelled).returncode == 0

    stats = site.json("stats")
    assert stats["since"].endswith("+09:00") and "13 s" in stats["line_time_estimate"]
    senders = {row["sender"]: row for row in stats["senders"]}
    alice = senders[ALICE]
    assert (alice["faxes"], alice["sent"], alice["failed"], alice["cancelled"]) == (2, 1, 1, 0)
    assert alice["success_rate"] == 0.5 and alice["pages"] == 2
    assert (alice["calls"], alice["answered_calls"]) == (3, 2)
    assert (alice["busy_calls"], alice["unanswered_calls"]) == (1, 1)  # the first call: busy
    tiff_bytes = site.rows("SELECT tiff_bytes, pages FROM jobs WHERE id = ?", sent)[0]
    expected = 13 * 2 + 1.2 * tiff_bytes[0] * 8 / 9600  # two answered calls, 2 pages at 9600
    assert alice["line_minutes"] == pytest.approx(expected / 60, abs=0.01)
    assert senders[BOB]["cancelled"] == 1 and senders[BOB]["success_rate"] is None
    destinations = {row["number_e164"]: row for row in stats["destinations"]}
    assert destinations["+81312345678"]["faxes"] == 2
    assert destinations["+81312345678"]["number"] == "0312345678"
    assert stats["total"]["faxes"] == 3

    text = site.faxmail("stats", "--since", "1d")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    header = next(line for line in lines if line.startswith("SENDER"))
    assert header.split() == [
        "SENDER", "FAXES", "SENT", "FAILED", "CANCELLED", "OPEN", "SUCCESS", "PAGES", "CALLS",
        "LINE", "MIN",
    ]  # fmt: skip
    row = next(line for line in lines if line.startswith(ALICE)).split()
    assert row[1:8] == ["2", "1", "1", "0", "0", "50%", "2"]
    assert any(line.startswith("+81312345678 (0312345678)") for line in lines)
    assert "line minutes are estimated" in text.stdout
    assert "estimated" in site.faxmail("stats", "--help").stdout


# --- received faxes -------------------------------------------------------------------------


def test_jobs_inbound_lists_received_faxes(site: Site) -> None:
    call = "1795698600.17"
    fax_tiff(site.root / "inbox" / f"{call}.tif", ("fine", "fine"))
    ran = site.dialplan().run("faxmail-receive", "h", reception(call, FAXPAGES="2"))
    assert ran.code == 0, ran
    site.mails("sales@example.jp")
    listed = site.json("jobs", "--inbound")["inbound"]
    assert len(listed) == 1
    (fax,) = listed
    assert (fax["did"], fax["caller"], fax["pages"], fax["status"]) == (
        "0312345678",
        "0398765432",
        2,
        "SUCCESS",
    )
    assert fax["routed_to"] == ["sales@example.jp"] and fax["mail_delivered"] is not None
    text = site.faxmail("jobs", "--inbound").stdout.splitlines()
    assert text[0].split() == [
        "RECEIVED",
        "DID",
        "CALLER",
        "PAGES",
        "STATUS",
        "ROUTED",
        "TO",
        "MAIL",
    ]
    assert "0398765432" in text[1] and "sales@example.jp" in text[1] and "delivered" in text[1]


def test_cancel_refuses_a_call_another_host_placed(site: Site) -> None:
    job_id = site.send(ALICE, "0312345678")
    assert [p.name for p in site.dispatched()] == [f"{job_id}.call"]
    # As if the other MX's dispatcher had placed it: its call file is in that host's spool.
    (site.outgoing / f"{job_id}.call").unlink()
    db = sqlite3.connect(site.root / "state" / "faxmail.sqlite")
    with db:
        db.execute("UPDATE dispatch SET host = 'mx-other' WHERE job_id = ?", (job_id,))
    db.close()
    ran = site.faxmail("cancel", job_id)
    assert ran.returncode == 1
    assert ran.stderr == (
        f"faxmail cancel: job {job_id} was not cancelled: its call file is in the spool of "
        "host mx-other: run `faxmail cancel` there; nothing was changed\n"
    )
    assert site.state(job_id) == "queued"
