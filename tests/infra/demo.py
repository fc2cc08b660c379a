"""`make demo`: the whole gateway on this machine, one fax through it, both mails as files.

Run by ``scripts/demo`` (as root, on a machine ``scripts/install-deps --test`` has prepared;
``make demo`` does both). It builds the loop the end-to-end tests build (infra.gateway): a
private Postfix on loopback ports chosen at run time, wired with the shipped
postfix/main.cf.milter (infra.postfix), dnsmasq serving the sender's DKIM key, faxmail-milter,
and Asterisk 22 in its chroot (scripts/asterisk-chroot) with the shipped asterisk/ dialplan
and a loopback remote fax machine. Then it sends one DKIM-signed mail with a two-page
Japanese/English PDF (made now) to fax+<number>@example.jp, waits for the fax to go over the
line and come back in as a received fax, and writes into the output folder:

    sample.pdf              the document that was mailed
    rendered.tif            the fax TIFF faxmail-milter rendered from it
    result-mail.eml / .pdf  the sender's result mail, and the fax as sent (its attachment)
    received-mail.eml / .pdf  the received fax's mail to the fax inbox, and its PDF
    logs/                   the milter's, notify's, Postfix's and Asterisk's logs

Every page of both PDFs is compared with the rendered TIFF, pixel for pixel, and said. It
uses no port below 1024 and none of the machine's own Postfix or Asterisk files: everything
else lives in a temporary folder that is removed at the end, on failure and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.message
import email.policy
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from infra.asterisk import StartAsterisk, asterisk_starter
from infra.dkimkeys import Signer, default_signers, dns_records
from infra.dns import DnsServer
from infra.faxpages import PageCheck, compare_pages, tiff_pages
from infra.faxstate import final_reply, job_rows
from infra.gateway import (
    REMOTE_CHANNEL,
    REPO,
    Gateway,
    asterisk_chroot,
    asterisk_host_user,
    build_gateway,
)
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess, faxmail_milter
from infra.pdfs import A4_LANDSCAPE, Page, build_pdf, japanese_text, latin_text
from infra.postfix import PostfixInstance

DOMAIN = "example.jp"  # the demo's fax domain; its DKIM key is the test one
SENDER = f"alice@{DOMAIN}"
NUMBER = "03-1234-5678"  # a plain fax machine at the far end (tests/e2e/e2e-remote.conf)
FAX_ADDRESS = f"fax+{NUMBER}@{DOMAIN}"
INBOX = f"fax-inbox@{DOMAIN}"  # where the far end's received fax is mailed
SUBJECT = "faxmail demo: 見積書 / quotation"
#: Seconds for the fax and both mails: about 40 on an idle machine.
WAIT_S = 420

#: notify.from_address is left unset on purpose: on a host named localhost its default is
#: the fax domain's faxmail@, as a newcomer's first policy would meet it.
POLICY = f"""\
fax_address: {{domains: [{DOMAIN}]}}
senders:
  - address: "@{DOMAIN}"
language: en
fax:
  channel: "{REMOTE_CHANNEL}"
inbound:
  routes:
    "{NUMBER.replace("-", "")}": [{INBOX}]
"""

Say = Callable[[str], None]

#: The two mails the fax makes: (mailbox, file of the mail, file of its PDF).
MAILS = (
    (SENDER, "result-mail.eml", "result-mail.pdf"),  # the sender's result mail
    (INBOX, "received-mail.eml", "received-fax.pdf"),  # the far end's received fax
)
#: The files a run leaves, in the order they are listed.
FILES = ("sample.pdf", "rendered.tif", *(f for _, *files in MAILS for f in files), "logs")


def sample_document() -> bytes:
    """Two A4 pages: a letter in Japanese and English, then a landscape price table."""
    letter = japanese_text("株式会社サンプル 御中", 50, 790, 16)
    letter += japanese_text("お見積書をお送りします。ご査収ください。", 50, 760)
    letter += latin_text(
        [
            "Quotation 2026-001",
            "",
            "Dear customer,",
            "please find our quotation for the items below. This page was mailed as a PDF,",
            "rendered into a fax by faxmail-milter during the SMTP dialogue, and sent over",
            "a (loopback) phone line by Asterisk.",
            "",
            "Kind regards, Alice",
        ],
        top=720,
        size=12,
    )
    rows = ["item | quantity | unit price | total"] + [
        f"part {n:02d} | {n * 3} | {n * 120:,} JPY | {n * n * 360:,} JPY" for n in range(1, 13)
    ]
    table = japanese_text("価格表 / price list", 50, 550, 16) + latin_text(rows, top=520, size=12)
    return build_pdf([Page(letter), Page(table, A4_LANDSCAPE)])


def demo_mail(signer: Signer, pdf: bytes) -> bytes:
    message = build_message(
        from_addr=SENDER,
        from_name="山田 花子 (Alice)",
        to=[FAX_ADDRESS],
        subject=SUBJECT,
        body="下記の番号へFAXをお願いします。 Please fax the attached quotation.\n",
        attachments=[Attachment(pdf, filename="見積書 quotation.pdf")],
        date="now",
    )
    return signer.sign(message)


def pdf_of(raw: bytes) -> bytes:
    """The one PDF attachment of a mail."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    for part in message.iter_attachments():
        if part.get_content_type() == "application/pdf":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return data
    raise ValueError("the mail has no PDF attachment")


def subject_of(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])


def decision_lines(log: str) -> list[str]:
    """The milter's one line per decision (queued, reject, ...), without the time stamp."""
    found = re.findall(r"^\S+ \S+ faxmail-milter\[\d+\] \w+ faxmail\.milter: (.*)$", log, re.M)
    return [str(line) for line in found]


class Stack:
    """What the demo starts, stopped in reverse order by :meth:`close` (also half-started)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._exit = contextlib.ExitStack()
        self.signers = default_signers()
        self.dns = DnsServer(log_path=work / "dnsmasq.log")

    def start_dns(self) -> None:
        """dnsmasq serving the signers' keys (started apart: the caller holds the stack)."""
        self._exit.callback(self.dns.cleanup)
        self.dns.start(dns_records(self.signers))

    def close(self) -> None:
        self._exit.close()

    def milter(self, settings: Mapping[str, Any]) -> MilterProcess:
        folder = self.work / "milter"
        folder.mkdir(mode=0o755)  # smtpd (user postfix) must reach the socket inside
        proc = faxmail_milter(
            folder,
            dns=(self.dns.host, self.dns.port),
            policy_yaml="",  # the gateway's policy file is in `settings`
            settings=settings,
            log_level="info",
        )
        self._exit.callback(proc.stop)
        proc.start()
        return proc

    def postfix(self, milter: MilterProcess) -> PostfixInstance:
        base = self.work / "postfix"
        base.mkdir()
        pf = PostfixInstance(milter.postfix_spec, base=base, domains=(DOMAIN,))
        self._exit.callback(pf.stop)
        pf.start()
        return pf

    @property
    def asterisk(self) -> StartAsterisk:
        return asterisk_starter(asterisk_chroot, lambda ast: self._exit.callback(ast.stop))

    def gateway(self) -> Gateway:
        base = self.work / "gateway"
        base.mkdir(mode=0o755)
        gateway = build_gateway(
            base,
            POLICY,
            owner=asterisk_host_user(),
            start_milter=self.milter,
            make_postfix=self.postfix,
            start_asterisk=self.asterisk,
        )
        self._exit.callback(gateway.close)
        return gateway


def keep_logs(gateway: Gateway, logs: Path) -> None:
    logs.mkdir(exist_ok=True)
    (logs / "faxmail-milter.log").write_text(gateway.milter.log())
    (logs / "faxmail-notify.log").write_text(gateway.notify_log())
    (logs / "postfix-maillog").write_text(gateway.postfix.log())
    (logs / "asterisk-full.log").write_text(gateway.asterisk.log())


def fax_it(gateway: Gateway, signer: Signer, output: Path, say: Say) -> list[PageCheck]:
    """Send the sample mail, wait for both mails, write the files; the page checks."""
    pdf = sample_document()
    (output / "sample.pdf").write_bytes(pdf)
    started = time.monotonic()
    result = gateway.postfix.send(SENDER, [FAX_ADDRESS], demo_mail(signer, pdf))
    reply = final_reply(result)
    say(f"sent {output / 'sample.pdf'} from {SENDER} to {FAX_ADDRESS}: Postfix answered {reply}")
    if not reply.startswith("250 "):
        raise RuntimeError(f"the fax mail was not accepted: {reply}")
    ((job_id, _),) = job_rows(gateway.milter)
    rendered = output / "rendered.tif"
    shutil.copyfile(gateway.spool / "fax" / f"{job_id}.tif", rendered)
    sent_pages = tiff_pages(rendered)
    say(f"job {job_id}: {len(sent_pages)} pages rendered; waiting for the call (about a minute)")
    mails = {}
    for address, eml, pdf_name in MAILS:
        (raw,) = gateway.postfix.wait_for_delivery(address, timeout=WAIT_S)
        (output / eml).write_bytes(raw)
        (output / pdf_name).write_bytes(pdf_of(raw))
        mails[address] = raw
    say(f"both mails delivered {time.monotonic() - started:.0f} s after the 250")
    checks = []
    for address, raw in mails.items():
        say(f"mail to {address}: {subject_of(raw)!r}")
        for check in compare_pages(pdf_of(raw), sent_pages):
            say(f"  {check.line()}")
            checks.append(check)
    return checks


def run(output: Path, say: Say = print) -> int:
    """The whole demo; 0 when both mails came and every page is identical."""
    started = time.monotonic()
    output.mkdir(parents=True, exist_ok=True)
    for name in FILES[:-1]:  # never show a previous run's files as this one's (logs/ stays)
        (output / name).unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fxm-demo-"))
    work.chmod(0o755)
    say(f"work folder (removed at the end): {work}")
    stack: Stack | None = None
    gateway: Gateway | None = None
    try:
        stack = Stack(work)
        stack.start_dns()
        gateway = stack.gateway()
        pf = gateway.postfix
        say(
            f"up in {time.monotonic() - started:.0f} s: Postfix on 127.0.0.1:{pf.port} (milter "
            f"lines from postfix/main.cf.milter), faxmail-milter, Asterisk 22 (chroot "
            f"{gateway.asterisk.base}), dnsmasq on {stack.dns.host}:{stack.dns.port}"
        )
        checks = fax_it(gateway, stack.signers[DOMAIN], output, say)
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        say(f"demo FAILED: {exc}")
        checks = []
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if gateway is not None:
            with contextlib.suppress(OSError):
                keep_logs(gateway, output / "logs")
        if stack is not None:
            stack.close()
        shutil.rmtree(work, ignore_errors=True)
    milter_log = output / "logs" / "faxmail-milter.log"
    say("the milter's decisions:")
    for line in decision_lines(milter_log.read_text() if milter_log.exists() else ""):
        say(f"  {line}")
    say("files:")
    for name in FILES:
        if (output / name).exists():
            say(f"  {(output / name).resolve()}")
    identical = bool(checks) and all(check.problem is None for check in checks)
    verdict = "every page pixel-identical" if identical else "FAILED (see above and logs/)"
    if checks and not identical:
        verdict = "FAILED: pages differ"
    say(f"demo done in {time.monotonic() - started:.0f} s: {verdict}")
    return 0 if identical else 1


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", type=Path, default=REPO / "demo-output", help="where the files go"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        return run(args.output, say)
    except KeyboardInterrupt:
        say(f"interrupted: everything the demo started is stopped; kept {args.output}")
        return 130


if __name__ == "__main__":
    sys.exit(main())
