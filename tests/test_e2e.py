"""End to end with a real Asterisk 22: mail in, fax out, fax in, mail out.

Everything is real and on this machine: a private Postfix on loopback with faxmail-milter wired
in, dnsmasq serving the staff's DKIM key, and Asterisk 22 (Debian sid chroot, see
tests/infra/asterisk.py) loaded with the shipped asterisk/ configuration. Test values go only
into the files the shipped ones include for site values (tests/e2e/faxmail-globals.conf,
tests/e2e/faxmail-pjsip-local.conf), plus the far end of the calls, a "remote fax machine"
(tests/e2e/e2e-remote.conf) that hands every call to the shipped receive path. faxmail-notify
runs inside the chroot from System(), from this checkout, and mails through the test Postfix.

    alice@example.jp ──SMTP, DKIM──▶ Postfix ──▶ faxmail-milter ──▶ call file + TIFF
        ──▶ [faxmail-send] SendFAX ══ Local channel (G.711) or PJSIP trunk (T.38) ══▶
        [e2e-remote] → [faxmail-incoming] → [faxmail-receive] ReceiveFAX
        ──▶ faxmail-notify ──SMTP──▶ the result mail to alice, the fax to the DID's mailbox

The two-page fax takes about a minute of real time (dense pages at 14 400 bit/s), the busy
case about 25 s (three attempts, 10 s apart); all of it about 3 minutes. Run only these:
``.venv/bin/pytest -q -m e2e``.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import io
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import attach_log
from infra.asterisk import AsteriskInstance, StartAsterisk
from infra.dkimkeys import Signer
from infra.faxpages import compare_pages, pdf_pages, tiff_pages
from infra.faxstate import callfiles, final_reply, job_rows
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.net import free_udp_port
from infra.pdfs import A4_LANDSCAPE, build_pdf, text_page
from infra.postfix import PostfixInstance, SendResult
from infra.protocols import MakePostfix, StartMilter

pytestmark = [pytest.mark.e2e, pytest.mark.asterisk, pytest.mark.postfix]

REPO = Path(__file__).resolve().parent.parent
E2E = Path(__file__).resolve().parent / "e2e"

SENDER = "alice@example.jp"
FAX = "fax+03-1234-5678@example.jp"  # the remote fax machine, DID routed to ROUTED
DIALLED = "0312345678"
BUSY_FAX = "fax+03-9876-5432@example.jp"  # always busy (tests/e2e/e2e-remote.conf)
ROUTED = "sales@example.jp"  # the policy's inbound route for 0312345678
INBOX_DEFAULT = "fax-inbox@example.jp"
SUBJECT = "見積書の送付 / quotation"

#: The staff may fax (DKIM of example.jp); received faxes for 0312345678 go to sales.
POLICY = """\
fax_address: {{domains: [example.jp]}}
senders:
  - address: "@example.jp"
language: ja
notify:
  from_address: "FAX Gateway <fax-gw@example.jp>"
  keep_sent_tiff_days: 0
fax:
  channel: "{channel}"
  max_retries: 2
  retry_time: 10
  wait_time: 20
retry:
  max_busy_attempts: 0  # busy counts as a real try: three calls, fax.retry_time apart
inbound:
  routes:
    "0312345678": [sales@example.jp]
  default: [fax-inbox@example.jp]
"""

AUDIO = "Local/{number}@e2e-remote"  # G.711 over a Local channel
T38 = "PJSIP/{number}@trunk"  # the shipped trunk, pointed at the remote fax machine

FAX_TIMEOUT = 240  # seconds for a 2-page fax and its mails (about 65 s when all is well)


# ---------------------------------------------------------------- the stack


@dataclass
class Stack:
    """One gateway: milter, Postfix, Asterisk and notify sharing a spool and a job store."""

    spool: Path  # Asterisk's spool (outgoing/, fax/, fax-in/): the same path in the chroot
    state: Path  # job store and notify spool (bind-mounted read-write)
    milter: MilterProcess
    postfix: PostfixInstance
    asterisk: AsteriskInstance

    @property
    def notify_log_path(self) -> Path:
        return self.state / "notify.log"

    def notify_log(self) -> str:
        path = self.notify_log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def notify_spool(self) -> list[str]:
        spool = self.state / "notify-spool"
        if not spool.is_dir():
            return []
        return sorted(p.name for p in spool.iterdir() if not p.name.startswith("."))  # .lock

    def job(self) -> tuple[str, str]:
        """(id, state) of the one job in the store."""
        ((job_id, state),) = job_rows(self.milter)
        return str(job_id), str(state)

    def wait_for_notify(self, pattern: str, timeout: float = FAX_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.notify_log(), re.MULTILINE)
            if found:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{pattern!r} not in the notify log after {timeout} s")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def asterisk_user() -> tuple[int, int]:
    """The host user ``asterisk`` with the chroot's uid/gid (an install step: the milter runs
    as root here and gives call files and TIFFs to ``asterisk.user``)."""
    script = REPO / "scripts" / "asterisk-chroot"
    proc = subprocess.run(
        [str(script), "host-user"], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/asterisk-chroot host-user failed:\n{proc.stderr}", pytrace=False)
    import pwd

    entry = pwd.getpwnam("asterisk")
    return entry.pw_uid, entry.pw_gid


@pytest.fixture(scope="session")
def notify_tools(asterisk_root: Path) -> None:
    """faxmail-notify reads received TIFFs with libtiff's tools (milter/faxmail/notify/
    convert.py); without them every good fax is mailed as "[FAILED] ... damaged"."""
    missing = [t for t in ("tiffinfo", "tiffcp") if not (asterisk_root / "usr/bin" / t).exists()]
    if missing:
        pytest.fail(
            f"the Asterisk chroot {asterisk_root} has no {' or '.join(missing)}, which "
            "faxmail-notify runs: scripts/asterisk-chroot must install libtiff-tools",
            pytrace=False,
        )


@pytest.fixture
def make_stack(
    request: pytest.FixtureRequest,
    workdir: Path,
    asterisk_user: tuple[int, int],
    notify_tools: None,
    start_milter: StartMilter,
    make_postfix: MakePostfix,
    start_asterisk: StartAsterisk,
) -> Callable[[str], Stack]:
    """Factory: the whole gateway with ``fax.channel`` = the given channel template.

    Laid out as asterisk/README.md tells an admin, under the test's workdir instead of /:
    ``asterisk/`` (the spool: outgoing, faxmail-staging, fax, fax-in), ``state/`` (job store,
    notify spool, notify.log; owned by asterisk), ``etc/`` (settings.yaml, policy.yaml).
    """
    uid, gid = asterisk_user

    def make(channel: str) -> Stack:
        spool, state, etc = workdir / "asterisk", workdir / "state", workdir / "etc"
        for sub in ("outgoing", "faxmail-staging", "fax", "fax-in"):
            (spool / sub).mkdir(parents=True)
        etc.mkdir()
        # install -d -o asterisk -g asterisk -m 0750 /var/lib/faxmail
        state.mkdir(mode=0o750)
        os.chown(state, uid, gid)
        # The milter runs as root here (the host's .venv is not reachable for asterisk), and
        # the job store it would create is root's: notify, running as asterisk, then fails
        # with "attempt to write a readonly database". So the store file is made asterisk's
        # first; SQLite run by root gives its -wal and -shm files the database file's owner.
        # (In production the milter runs as asterisk: systemd/faxmail-milter.service.)
        store = state / "faxmail.sqlite"
        store.touch(mode=0o640)
        os.chown(store, uid, gid)
        policy = etc / "policy.yaml"
        policy.write_text(POLICY.format(channel=channel))

        milter = start_milter(
            {
                "policy": str(policy),
                "state_dir": str(state),
                "asterisk": {"spool_dir": str(spool), "user": "asterisk"},
            },
        )
        postfix = make_postfix(milter)
        # The same settings for notify (in production one file, /etc/faxmail/settings.yaml),
        # plus how it mails: SMTP to the test Postfix (there is no sendmail in the chroot).
        settings = {
            **milter.settings,
            "mail": {"transport": "smtp", "host": "127.0.0.1", "port": postfix.port},
            "notify": {
                "inbox_dir": str(spool / "fax-in"),
                "log_file": str(state / "notify.log"),
            },
        }
        settings_path = etc / "settings.yaml"
        settings_path.write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))

        extensions = (REPO / "asterisk" / "extensions.conf").read_text()
        asterisk = start_asterisk(
            REPO / "asterisk",
            files={
                "extensions.conf": extensions + "\n#include e2e-remote.conf\n",
                "e2e-remote.conf": (E2E / "e2e-remote.conf").read_text(),
                "faxmail-globals.conf": (E2E / "faxmail-globals.conf").read_text(),
                "faxmail-pjsip-local.conf": (E2E / "faxmail-pjsip-local.conf").read_text(),
            },
            spool_dir=spool,
            binds=[state],
            ro_binds=[REPO, etc],
            env={"PYTHONPATH": f"{REPO}/milter"},
            extra_modules=["func_base64"],  # BASE64_ENCODE, see extensions.conf's header
            SIP_PORT=free_udp_port("127.0.0.1", "127.0.0.2"),
            SETTINGS=settings_path,
        )
        stack = Stack(spool, state, milter, postfix, asterisk)
        attach_log(request, "faxmail-notify log", stack.notify_log)
        return stack

    return make


# ---------------------------------------------------------------- the mail and its fax


def fax_document() -> bytes:
    """Two A4 pages: a letter with a Japanese line (a non-embedded CID font, as Japanese
    office suites write it), then a landscape table."""
    japanese = "東京都千代田区 ファクス送信のテストです。請求書を添付します。"
    hexed = japanese.encode("utf-16-be").hex().upper().encode()
    letter = text_page("Quotation 2026-001")
    letter.content = b"BT /F2 16 Tf 50 810 Td <" + hexed + b"> Tj ET\n" + letter.content
    table = text_page("r0c0 | r0c1 | r0c2 | r0c3 | r0c4 | r0c5 | r0c6 | r0c7", A4_LANDSCAPE)
    return build_pdf([letter, table])


def staff_mail(signer: Signer, to: str = FAX, author: str = SENDER) -> bytes:
    message = build_message(
        from_addr=author,
        from_name="山田 花子",
        to=[to],
        subject=SUBJECT,
        body="下記の番号へFAXをお願いします。\n",
        attachments=[Attachment(fax_document(), filename="見積書.pdf")],
        date="now",
    )
    return signer.sign(message)


def parse(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def text_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def pdf_attachment(message: email.message.EmailMessage) -> bytes:
    (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert isinstance(part, email.message.EmailMessage)
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


def assert_same_pages(pdf: bytes, sent: list[Image.Image], what: str) -> None:
    """The PDF holds exactly the sent TIFF's pages, pixel for pixel, each an A4 fax page."""
    problems = [check.line() for check in compare_pages(pdf, sent) if check.problem is not None]
    assert problems == [], f"{what}: {problems}"


def send_fax(stack: Stack, message: bytes, rcpt: str = FAX) -> tuple[str, list[Image.Image]]:
    """Send over SMTP; return the job id and the pages of the TIFF the milter queued."""
    result = stack.postfix.send(SENDER, [rcpt], message)
    assert final_reply(result).startswith("250 "), result
    job_id, state = stack.job()
    assert state == "queued"
    tiff = stack.spool / "fax" / f"{job_id}.tif"
    # Read now: notify deletes it after the result mail (test policy: keep_sent_tiff_days: 0).
    return job_id, tiff_pages(tiff)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not after {timeout} s")
        time.sleep(0.1)


def sessions(ast: AsteriskInstance) -> set[tuple[str, str]]:
    """(operation, type) of the fax sessions ``fax show sessions`` lists."""
    found = re.findall(
        r"^\S+\s+Spandsp\s+\d+\s+(\S+)\s+(send|receive)\s", ast.cli("fax show sessions"), re.M
    )
    return {(operation, kind) for kind, operation in found}


def archived_status(stack: Stack, job_id: str) -> str:
    """Status: of the job's call file in outgoing_done/ ("" until Asterisk archived it)."""
    done = stack.spool / "outgoing_done" / f"{job_id}.call"
    found = re.search(r"^Status: (\w+)", done.read_text() if done.exists() else "", re.M)
    return found.group(1) if found else ""


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize(
    ("channel", "session_type", "mode_text"),
    [(AUDIO, "G.711", "音声 (G.711)"), (T38, "T.38", "T.38")],
    ids=["audio", "t38"],
)
def test_mail_to_fax_to_mail(
    make_stack: Callable[[str], Stack],
    dkim_keys: dict[str, Signer],
    channel: str,
    session_type: str,
    mode_text: str,
) -> None:
    stack = make_stack(channel)
    ast = stack.asterisk
    if channel == T38:
        # The shipped trunk, with the site's contact and match only (asterisk/pjsip.conf).
        endpoint = ast.cli("pjsip show endpoint trunk")
        assert re.findall(r"Contact:\s+trunk/(\S+)", endpoint) == [
            f"sip:127.0.0.2:{ast.template_values['SIP_PORT']}"
        ], endpoint
        assert "trunk-identify/trunk" in ast.cli("pjsip show identifies")
    t0 = time.monotonic()
    job_id, sent = send_fax(stack, staff_mail(dkim_keys["example.jp"]))
    assert len(sent) == 2
    assert all(page.size == (1728, 2292) for page in sent)
    # While the call runs, Asterisk shows both ends of it (what an admin would look at).
    wait_until(
        lambda: sessions(ast) == {("send", session_type), ("receive", session_type)},
        "fax sessions",
    )

    # (1) The result mail to the sender: sent, 2 of 2 pages, the document as faxed.
    (raw,) = stack.postfix.wait_for_delivery(SENDER, timeout=FAX_TIMEOUT)
    elapsed = time.monotonic() - t0
    result = parse(raw)
    assert result["Subject"] == f"FAX送信完了: {SUBJECT}"
    assert result["To"] == SENDER
    text = text_of(result)
    for fact in (
        "03-1234-5678 へのFAXを送信しました。",
        "宛先番号: 03-1234-5678 (+81312345678)",
        "結果: 送信完了",
        "ページ数: 2 / 2",
        "解像度: ファイン (204x196 dpi)",
        f"方式: {mode_text}",
        f"ジョブID: {job_id}",
        "応答あり、送信完了",
    ):
        assert fact in text, text
    assert len(re.findall(r"^  \d+\. ", text, re.M)) == 1, text  # one attempt
    assert_same_pages(pdf_attachment(result), sent, "result mail")

    # (2) The received fax to the DID's mailbox: the same pixels, A4, a preview of page 1.
    (raw,) = stack.postfix.wait_for_delivery(ROUTED, timeout=FAX_TIMEOUT)
    received = parse(raw)
    assert re.fullmatch(r"FAX受信: .+ \(2枚\)", received["Subject"]), received["Subject"]
    text = text_of(received)
    for fact in (
        f"着信番号: {DIALLED}",
        "ページ数: PDF 2 ページ (回線上の報告: 2 ページ)",
        "結果: SUCCESS",
        f"方式: {mode_text}",
        "解像度: ファイン (204x196 dpi)",
    ):
        assert fact in text, text
    html = received.get_body(("html",))
    assert html is not None
    (png,) = [p for p in received.walk() if p.get_content_type() == "image/png"]
    assert f'src="cid:{png["Content-ID"].strip("<>")}"' in html.get_content()
    preview = png.get_payload(decode=True)
    assert isinstance(preview, bytes)
    with Image.open(io.BytesIO(preview)) as image:
        assert image.width == 400 and abs(image.height - 552) <= 1, image.size
    assert_same_pages(pdf_attachment(received), sent, "received fax")

    notify = stack.notify_log()
    assert re.search(rf"job {job_id}: sent, 2 pages", notify), notify
    assert re.search(rf"fax \S+ from .* to DID '{DIALLED}' spooled for \['{ROUTED}'\]", notify)

    # The job is over, and every loose end tied: job "sent", the call file archived as
    # Completed, both TIFFs deleted once mailed, the notify spool empty, no other mail.
    ast.wait_for_log(r"NoOp\(.*\"faxmail: receive context done\"\)", timeout=30)
    ast.wait_for_log(r"NoOp\(.*\"faxmail: send context done\"\)", timeout=30)
    assert stack.job() == (job_id, "sent")
    wait_until(lambda: archived_status(stack, job_id) == "Completed", "call file archived")
    assert not (stack.spool / "fax" / f"{job_id}.tif").exists()
    assert list((stack.spool / "fax-in").iterdir()) == []
    assert stack.notify_spool() == []
    stack.postfix.wait_for_empty_queue()
    assert len(stack.postfix.messages(SENDER)) == 1
    assert len(stack.postfix.messages(ROUTED)) == 1
    assert stack.postfix.messages(INBOX_DEFAULT) == []
    assert " ERROR " not in notify, notify
    print(f"{session_type}: mail in to both mails out in {elapsed:.1f} s")


def test_busy_destination_one_failure_mail_after_three_attempts(
    make_stack: Callable[[str], Stack], dkim_keys: dict[str, Signer]
) -> None:
    stack = make_stack(AUDIO)
    t0 = time.monotonic()
    job_id, _ = send_fax(stack, staff_mail(dkim_keys["example.jp"], to=BUSY_FAX), BUSY_FAX)

    # Attempts 1 and 2 are recorded, and mail nobody.
    stack.wait_for_notify(rf"job {job_id}: attempt 2 not answered \(REASON 5\)", timeout=90)
    assert stack.postfix.messages(SENDER) == []
    # fax.max_retries 2 (retry.max_attempts 3, busy not free here): faxmail places each call,
    # one call file each; the third is the last, then exactly one failure mail.
    (raw,) = stack.postfix.wait_for_delivery(SENDER, timeout=90)
    elapsed = time.monotonic() - t0
    mail = parse(raw)
    assert mail["Subject"] == f"[FAILED] FAX送信失敗: {SUBJECT}"
    text = text_of(mail)
    for fact in (
        "03-9876-5432 へのFAXを送信できませんでした。",
        "結果: 失敗",
        "ページ数: 0 / 2",
        "エラー: 3 回発信しましたが応答がありませんでした (最後: 話し中)",
    ):
        assert fact in text, text
    attempts = re.findall(r"^  (\d+)\. (\S+ \S+)  (.*)$", text, re.M)
    assert [(n, what) for n, _, what in attempts] == [
        ("1", "話し中"),
        ("2", "話し中"),
        ("3", "話し中"),
    ]
    times = [time.mktime(time.strptime(at, "%Y-%m-%d %H:%M:%S")) for _, at, _ in attempts]
    # In order; their spacing is fax.retry_time plus however late System() ran: a busy
    # machine delays notify's record of an attempt, so the gaps are not asserted (no timing
    # asserts). The dial count is proved from Asterisk's own log below.
    assert times == sorted(times), times
    assert len(pdf_pages(pdf_attachment(mail))) == 2  # the document that could not be sent

    # Asterisk is done with the three call files (each Expired after its one attempt) and
    # notify with the job: nothing is left that could send a second mail or call.
    for name in (job_id, f"{job_id}-r2", f"{job_id}-r3"):
        wait_until(lambda n=name: archived_status(stack, n) == "Expired", "call file archived")
    assert stack.job() == (job_id, "failed")
    assert (
        len(re.findall(r"pbx_spool\.c: Attempting call on Local/0398765432", stack.asterisk.log()))
        == 3
    )
    assert stack.notify_spool() == []
    stack.postfix.wait_for_empty_queue()
    assert len(stack.postfix.messages(SENDER)) == 1
    assert stack.postfix.messages(ROUTED) == stack.postfix.messages(INBOX_DEFAULT) == []
    assert "SendFAX(" not in stack.asterisk.log()  # never answered
    print(f"busy: failure mail after three attempts in {elapsed:.1f} s")


def test_rejected_sender_nothing_reaches_asterisk(
    make_stack: Callable[[str], Stack], dkim_keys: dict[str, Signer]
) -> None:
    stack = make_stack(AUDIO)
    mark = stack.asterisk.log_mark()
    # Not a sender of the policy: refused at RCPT.
    stranger = build_message(
        from_addr="eve@evil.example",
        to=[FAX],
        subject="please fax",
        attachments=[Attachment(fax_document(), filename="x.pdf")],
    )
    result: SendResult = stack.postfix.send("eve@evil.example", [FAX], stranger)
    assert result.rcpts[FAX].code == 550, result
    assert "5.7.1 <eve@evil.example> is not allowed to send faxes" in result.rcpts[FAX].text
    assert result.data is None
    # A staff address, but the mail is not signed: refused at the end of DATA.
    unsigned = build_message(
        from_addr=SENDER,
        to=[FAX],
        subject=SUBJECT,
        attachments=[Attachment(fax_document(), filename="x.pdf")],
    )
    result = stack.postfix.send(SENDER, [FAX], unsigned)
    assert final_reply(result).startswith("550 5.7.20"), result

    # Nothing queued, nothing dialled, nothing reported.
    assert job_rows(stack.milter) == []
    assert callfiles(stack.milter) == []
    assert list((stack.spool / "fax").iterdir()) == []
    assert not (stack.spool / "outgoing_done").exists()
    assert "0 active calls" in stack.asterisk.cli("core show channels")
    assert "pbx_spool" not in stack.asterisk.log()[mark:]
    assert stack.notify_log() == ""
    stack.postfix.wait_for_empty_queue()
    assert stack.postfix.messages(SENDER) == []
