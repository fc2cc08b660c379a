"""A batch of faxes mailed at once through the gateway, and the result mails they earn.

The document is one sparse A4 page (an order of three lines): about 15 s on the line at
14 400 bit/s, so that ten faxes one after another fit a test run.
"""

from __future__ import annotations

import concurrent.futures
import email
import email.message
import email.policy
import itertools
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from infra.dkimkeys import Signer
from infra.mail import Attachment, build_message
from infra.pdfs import Page, build_pdf
from infra.postfix import PostfixInstance

SENDER = "alice@example.jp"
_serial = itertools.count(1)


def fax_address(number: str) -> str:
    """The mail address of a fax number such as 03-5555-0001."""
    return f"fax+{number}@example.jp"


def order_pdf(serial: int) -> bytes:
    """One A4 page with three short lines: little to send, so the call is short."""
    lines = [f"Order {serial:04d}", "1 x toner cartridge", "Please deliver by Friday."]
    ops = [b"BT /F1 14 Tf 18 TL 60 780 Td"]
    ops += [b"(" + line.encode("ascii") + b") Tj T*" for line in lines]
    return build_pdf([Page(b"\n".join([*ops, b"ET"]))])


def fax_mail(signer: Signer, number: str, sender: str = SENDER) -> tuple[bytes, str]:
    """A signed fax mail to ``number`` (a fresh Message-ID and order number each) and its
    Subject."""
    serial = next(_serial)
    subject = f"Order {serial:04d}"
    raw = build_message(
        from_addr=sender,
        to=[fax_address(number)],
        subject=subject,
        body="Please fax the attached order.\n",
        attachments=[Attachment(order_pdf(serial), filename=f"order-{serial:04d}.pdf")],
        message_id=f"<order-{time.time_ns()}-{serial}@example.jp>",
        date="now",
    )
    return signer.sign(raw), subject


@dataclass(frozen=True)
class Accepted:
    """One fax mail's SMTP transaction: the reply after DATA and when it came."""

    number: str
    subject: str
    reply: str  # "250 2.0.0 Ok: queued as ..."
    at: float  # time.time() right after the reply

    @property
    def ok(self) -> bool:
        return self.reply.startswith("250 ")


def mail_at_once(
    postfix: PostfixInstance, signer: Signer, numbers: Sequence[str], sender: str = SENDER
) -> list[Accepted]:
    """One SMTP transaction per number, all at the same time (the mails are signed first)."""
    mails = [fax_mail(signer, number, sender) for number in numbers]

    def send(index: int) -> Accepted:
        (raw, subject), number = mails[index], numbers[index]
        result = postfix.send(sender, [fax_address(number)], raw)
        at = time.time()
        data = result.data
        reply = f"{data.code} {data.text}" if data else f"no DATA reply: {result}"
        return Accepted(number, subject, reply, at)

    with concurrent.futures.ThreadPoolExecutor(max(1, len(numbers))) as pool:
        return list(pool.map(send, range(len(numbers))))


def mail_through(
    postfixes: Sequence[PostfixInstance],
    signer: Signer,
    numbers: Sequence[str],
    sender: str = SENDER,
) -> list[Accepted]:
    """As :func:`mail_at_once`, the numbers dealt out over several MX hosts' Postfix in turn
    (every other one through the second of two), all at the same time."""
    shares = [numbers[n :: len(postfixes)] for n in range(len(postfixes))]
    with concurrent.futures.ThreadPoolExecutor(len(shares)) as pool:
        sent = [
            pool.submit(mail_at_once, postfix, signer, share, sender)
            for postfix, share in zip(postfixes, shares, strict=True)
        ]
        return [accepted for share in sent for accepted in share.result()]


# ---------------------------------------------------------------- the result mails


@dataclass(frozen=True)
class ResultMail:
    """What a result mail (language: en) says, as far as the queue's tests care."""

    subject: str
    sent: bool  # "Fax sent: ..." (else "[FAILED] ..." or "[CANCELLED] ...")
    job: str
    bitrate: int | None  # of the last answered call, bit/s
    attempts: tuple[str, ...]  # each attempt's line after its time, e.g. "busy"
    text: str


def parse_result(raw: bytes) -> ResultMail:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    part = message.get_body(("plain",))
    text = str(part.get_content()) if part is not None else ""
    job = re.search(r"^  Job: (\S+)$", text, re.M)
    bitrate = re.search(r"^  Bit rate: (\d+) bit/s$", text, re.M)
    return ResultMail(
        subject=str(message["Subject"]),
        sent=str(message["Subject"]).startswith("Fax sent: "),
        job=job.group(1) if job else "",
        bitrate=int(bitrate.group(1)) if bitrate else None,
        attempts=tuple(re.findall(r"^  \d+\. \S+ \S+  (.*)$", text, re.M)),
        text=text,
    )


def wait_for_results(
    postfix: PostfixInstance, sender: str, count: int, timeout: float
) -> tuple[list[ResultMail], float]:
    """Wait until ``count`` mails reached ``sender``; return them (oldest first) and when the
    last of them was seen (time.time(), polled every 50 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        raws = postfix.messages(sender)
        if len(raws) >= count:
            return [parse_result(raw) for raw in raws], time.time()
        if time.monotonic() >= deadline:
            subjects = [parse_result(raw).subject for raw in raws]
            raise TimeoutError(f"{len(raws)} of {count} result mails after {timeout} s: {subjects}")
        time.sleep(0.05)
