"""Sent faxes: the send context's System() lines, in the order Asterisk runs them, against a
real Postfix. Exactly one result mail per job, after the final outcome."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pikepdf
import pytest

from conftest import attach_log
from faxmail.asterisk.callfile import parse_callfile
from infra.net import free_port
from infra.postfix import PostfixInstance
from test_notify_support import POLICY, NotifyEnv, attachments, body_text, parse

pytestmark = pytest.mark.postfix

ALICE = "alice@example.jp"


@pytest.fixture
def env(request: pytest.FixtureRequest, workdir: Path, postfix: PostfixInstance) -> NotifyEnv:
    notify_env = NotifyEnv(workdir, postfix.port)
    attach_log(request, "faxmail-notify log", notify_env.log)
    return notify_env


def setvars(callfile: Path) -> dict[str, str]:
    """The Setvar: lines of a call file, as channel variables."""
    pairs = [v.split("=", 1) for k, v in parse_callfile(callfile.read_bytes()) if k == "Setvar"]
    return {name: value for name, value in pairs}


def channel(job_id: str, attempt: int = 1, /, **fax: str) -> dict[str, str]:
    """Channel variables of the send context: the call file's Setvar: lines, then the fax's."""
    values = {
        "FAXMAIL_JOB": job_id,
        "FAXFILE": f"/var/spool/asterisk/fax/{job_id}.tif",
        "FAXNUMBER": "0312345678",
        "FAXMAIL_ROUND": "",  # the milter's call file has none
        "AST_OUTGOING_ATTEMPT": str(attempt),
        "FAXSTATUS": "SUCCESS",
        "FAXSTATUSSTRING": "OK",
        "FAXERROR": "HANGUP",  # a successful send has it too
        "FAXPAGES": "2",
        "FAXBITRATE": "14400",
        "FAXRESOLUTION": "8031x7700",
        "REMOTESTATIONID": "+81 3 1234 5678",
        "LOCALSTATIONID": "",
        "FAXMODE": "T38",
    }
    values.update(fax)
    return values


def answered_and_done(
    env: NotifyEnv,
    job_id: str,
    /,
    attempt: int = 1,
    call: dict[str, str] | None = None,
    fax: dict[str, str] | None = None,
) -> int:
    """An answered call: `send` (answered), then `h` (the fax's outcome `fax`). `call`: the
    call file's Setvar: values when not the milter's first call file."""
    ran = env.dialplan.run("faxmail-send", "send", {**channel(job_id, attempt), **(call or {})})
    assert ran.code == 0, ran
    outcome = {**channel(job_id, attempt, **(fax or {})), **(call or {})}
    ran = env.dialplan.run("faxmail-send", "h", outcome)
    return ran.code


def unanswered(env: NotifyEnv, job_id: str, attempt: int, reason: str) -> None:
    """An unanswered attempt: `failed`, then `h` on the same channel with FAXSTATUS empty.

    The shipped `h` skips its System() after `failed` (FAXMAIL_UNANSWERED); it is run here
    anyway, as a dialplan without that guard would, and notify must ignore it.
    """
    values = {"FAXMAIL_JOB": job_id, "AST_OUTGOING_ATTEMPT": str(attempt), "REASON": reason}
    ran = env.dialplan.run("faxmail-send", "failed", values)
    assert ran.code == 0, ran
    ran = env.dialplan.run("faxmail-send", "h", {**values, "FAXSTATUS": ""})
    assert ran.code == 0, ran


def settled(postfix: PostfixInstance, address: str) -> list[bytes]:
    """Everything Postfix got so far, delivered."""
    postfix.wait_for_empty_queue()
    return postfix.messages(address)


def test_sent_success_one_mail_with_pdf(env: NotifyEnv, postfix: PostfixInstance) -> None:
    job = env.add_job(pages=2)
    assert answered_and_done(env, job.id) == 0
    (raw,) = postfix.wait_for_delivery(ALICE)
    mail = parse(raw)
    # Japanese subject: RFC 2047 on the wire, the same text back.
    assert mail["Subject"] == "FAX送信完了: 見積書の送付 / quotation"
    head = raw.split(b"\n\n", 1)[0]
    assert b"=?utf-8?" in head and head.isascii()
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Date"] and mail["Message-ID"].endswith("@example.jp>")
    assert mail["From"].addresses[0].addr_spec == "fax-gw@example.jp"
    text = body_text(mail)
    for fact in ("03-1234-5678", "送信完了", "2 / 2", "14400 bit/s", "ファイン (204x196 dpi)"):
        assert fact in text, text
    assert "T.38" in text and "+81 3 1234 5678" in text
    (pdf,) = attachments(mail).values()
    assert len(pikepdf.open(io.BytesIO(pdf)).pages) == 2
    assert env.job_state(job.id) == "sent"
    assert env.query("SELECT delivered IS NOT NULL FROM results WHERE job_id = ?", job.id) == [(1,)]
    assert not Path(job.tiff).exists()  # policy notify.keep_sent_tiff_days: 0
    assert env.spooled() == []
    # The same h extension run again (a double call): still one mail.
    assert env.dialplan.run("faxmail-send", "h", channel(job.id)).code == 0
    assert len(settled(postfix, ALICE)) == 1


def test_sent_failed_english_with_admin_copy(env: NotifyEnv, postfix: PostfixInstance) -> None:
    env.write_policy(POLICY.replace("admin_cc: null", "admin_cc: admin@other.example"))
    job = env.add_job(language="en", reply_to="desk@other.example")
    error = "Far end cannot receive at the size of image"
    fax = {"FAXSTATUS": "FAILED", "FAXERROR": "INVALID_ARGUMENTS", "FAXSTATUSSTRING": error}
    assert answered_and_done(env, job.id, fax={**fax, "FAXPAGES": "0", "FAXMODE": "audio"}) == 0
    (raw,) = postfix.wait_for_delivery("desk@other.example")  # Reply-To wins over From
    mail = parse(raw)
    assert mail["Subject"] == "[FAILED] Fax not sent: 見積書の送付 / quotation"
    text = body_text(mail)
    assert error in text and "INVALID_ARGUMENTS" in text and "FAILED" in text
    assert "audio (G.711)" in text
    assert postfix.wait_for_delivery("admin@other.example")  # policy admin_cc
    assert settled(postfix, ALICE) == []
    assert env.job_state(job.id) == "failed"


def test_busy_three_times_one_mail_after_the_third(
    env: NotifyEnv, postfix: PostfixInstance
) -> None:
    job = env.add_job()
    for attempt, reason in ((1, "5"), (2, "8")):  # busy, congestion; fax.max_retries = 2
        unanswered(env, job.id, attempt, reason)
        assert settled(postfix, ALICE) == []
        assert env.job_state(job.id) == "queued"
        assert Path(job.tiff).exists()  # Asterisk still needs it
    unanswered(env, job.id, 3, "3")  # no answer: the last attempt
    (raw,) = postfix.wait_for_delivery(ALICE)
    mail = parse(raw)
    assert mail["Subject"] == "[FAILED] FAX送信失敗: 見積書の送付 / quotation"
    text = body_text(mail)
    lines = [line for line in text.splitlines() if line.startswith("  ") and ". 20" in line]
    assert len(lines) == 3, text
    for line, reason in zip(lines, ("話し中", "回線混雑", "応答なし"), strict=True):
        assert line.endswith(reason), line
    assert "3 回発信しましたが応答がありませんでした" in text
    assert env.job_state(job.id) == "failed"
    unanswered(env, job.id, 3, "3")  # repeated: nothing more
    assert len(settled(postfix, ALICE)) == 1


def test_fax_level_retry_then_one_mail(env: NotifyEnv, postfix: PostfixInstance) -> None:
    env.write_policy(POLICY.replace("notify:\n", "notify:\n  fax_retries: 1\n"))
    job = env.add_job()
    failed = {"FAXSTATUS": "FAILED", "FAXERROR": "TRAINING_ERROR", "FAXPAGES": "0"}
    before = time.time()
    assert answered_and_done(env, job.id, fax=failed) == 0
    # No mail yet, and no call file: the next call waits in faxmail's queue, fax.retry_time
    # (300 s) from now, for the dispatcher to place it.
    assert list(env.outgoing.glob("*.call")) == []
    ((round_, not_before, host),) = env.query("SELECT round, not_before, host FROM dispatch")
    assert round_ == 2 and host is None
    assert before + 290 < not_before < time.time() + 310
    assert env.job_state(job.id) == "queued"
    # The same h run twice queues nothing more.
    assert env.dialplan.run("faxmail-send", "h", channel(job.id, **failed)).code == 0
    assert env.query("SELECT round FROM dispatch") == [(2,)]
    assert settled(postfix, ALICE) == []
    # The dispatcher, when that time comes: call 2, one attempt, its round in the call file.
    callfile = env.dispatch(at=not_before + 1)
    assert callfile.name == f"{job.id}-r2.call"
    values = dict(parse_callfile(callfile.read_bytes()))
    assert values["Channel"] == "PJSIP/0312345678@trunk" and values["MaxRetries"] == "0"
    retry_call = setvars(callfile)
    assert retry_call == {
        "FAXMAIL_JOB": job.id,
        "FAXFILE": job.tiff,
        "FAXNUMBER": "0312345678",
        "FAXMAIL_ROUND": "2",
    }
    # The retry call: answered, fax fails again → the one result mail, both calls listed.
    assert answered_and_done(env, job.id, call=retry_call, fax=failed) == 0
    assert env.query("SELECT round, outcome FROM attempts") == [
        (1, "answered"),
        (1, "failed"),
        (2, "answered"),
        (2, "failed"),
    ]
    (raw,) = postfix.wait_for_delivery(ALICE)
    text = body_text(parse(raw))
    assert text.count("FAX送信失敗: TRAINING_ERROR") == 2, text
    assert env.job_state(job.id) == "failed"
    assert env.query("SELECT count(*) FROM dispatch") == [(0,)]  # nothing left to call


def test_result_waits_in_the_spool_while_the_relay_is_down(
    env: NotifyEnv, postfix: PostfixInstance
) -> None:
    env.write_settings(port=free_port())  # nothing listens there
    job = env.add_job()
    assert answered_and_done(env, job.id) == 75  # EX_TEMPFAIL: spooled, not yet handed over
    assert env.spooled() == [f"result-{job.id}"]
    assert "kept in the spool" in env.log()
    env.write_settings(port=postfix.port)
    assert env.notify("retry").code == 0
    assert len(postfix.wait_for_delivery(ALICE)) == 1
    assert env.notify("retry").code == 0
    assert len(settled(postfix, ALICE)) == 1
    assert env.spooled() == []


def test_unknown_job_is_reported(env: NotifyEnv) -> None:
    ran = env.notify("sent", "--job=00000000deadbeef", "--status=SUCCESS")
    assert ran.code == 66, ran
    assert "not in the store" in env.log()


def test_archived_calls_without_a_final_report_get_their_mail(
    env: NotifyEnv, postfix: PostfixInstance
) -> None:
    """The policy's max_retries was raised after queueing (the last `failed` never counted as
    last), and another call ended without its `h` report: Asterisk's archive settles both."""
    expired = env.add_job("00000000000000e1")
    silent = env.add_job("00000000000000c1", reply_to="desk@other.example")
    env.write_policy(POLICY + "fax: {max_retries: 4}\n")  # the call files say 2
    for attempt in (1, 2, 3):  # Asterisk's last attempt is 3; notify waits for a 5th
        unanswered(env, expired.id, attempt, "5")
    ran = env.dialplan.run("faxmail-send", "send", channel(silent.id))
    assert ran.code == 0, ran
    done = env.asterisk / "outgoing_done"
    done.mkdir()
    old = time.time() - 3600
    for job, status in ((expired, "Expired"), (silent, "Completed")):
        archived = done / f"{job.id}.call"
        archived.write_text(f"Channel: PJSIP/0312345678@trunk\nStatus: {status}\n")
        os.utime(archived, (old, old))
    assert settled(postfix, ALICE) == []
    assert env.notify("retry").code == 0
    text = body_text(parse(postfix.wait_for_delivery(ALICE)[0]))
    assert "3 回発信しましたが応答がありませんでした" in text
    text = body_text(parse(postfix.wait_for_delivery("desk@other.example")[0]))
    assert "Asteriskから送信結果の報告がありませんでした" in text
    assert env.notify("retry").code == 0
    assert len(settled(postfix, ALICE)) == 1
    assert (env.job_state(expired.id), env.job_state(silent.id)) == ("failed", "failed")


def test_sent_tiffs_kept_for_resend_then_pruned(env: NotifyEnv, postfix: PostfixInstance) -> None:
    env.write_policy(POLICY.replace("  keep_sent_tiff_days: 0\n", "  keep_sent_tiff_days: 2\n"))
    recent = env.add_job("00000000000000a1")
    old = env.add_job("00000000000000a2", created=time.time() - 3 * 86400)
    for job in (recent, old):
        assert answered_and_done(env, job.id) == 0
    assert len(postfix.wait_for_delivery(ALICE, count=2)) == 2
    assert Path(recent.tiff).exists() and Path(old.tiff).exists()  # the mail did not take them
    assert env.notify("retry").code == 0
    assert Path(recent.tiff).exists(), "kept for `faxmail resend`"
    assert not Path(old.tiff).exists(), "older than keep_sent_tiff_days"
