"""Load through the real Postfix and daemon: 20 concurrent SMTP clients mixing ordinary mail,
good faxes and hostile mail. Every mail is answered, the daemon's file descriptors and memory
stay flat, and exactly one call file exists per 250 to a fax recipient.

CI runs 30 s; the long run of issue 6 is ``FAXMAIL_LOAD_SECONDS=600`` (README, Reliability).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.constants import BASE_POLICY, FAX
from infra.dkimkeys import Signer
from infra.faxstate import callfiles, job_rows, owed_calls, spool_dir
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.pdfs import make_encrypted_pdf, make_pdf
from infra.postfix import PostfixInstance, SendResult
from infra.protocols import MakePostfix, StartMilter

pytestmark = pytest.mark.postfix

POLICY = (
    BASE_POLICY
    + """\
limits: {per_hour: 1000000, per_day: 1000000}
"""
)
CLIENTS = 20
SECONDS = float(os.environ.get("FAXMAIL_LOAD_SECONDS", "30"))

_PDF = make_pdf(1)


def _fax(tag: str, attachments: list[Attachment], **kw: object) -> bytes:
    return build_message(
        from_addr="alice@example.jp",
        to=[FAX],
        message_id=f"<{tag}@example.jp>",
        attachments=attachments,
        **kw,  # type: ignore[arg-type]
    )


def hostile_corpus(signer: Signer) -> list[Callable[[str], bytes]]:
    """Mail that must be refused for good (5xx), each built fresh per send."""
    pdf = [Attachment(_PDF, filename="a.pdf")]
    nested = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n)
        for n in range(200)
    )
    return [
        lambda tag: _fax(tag, pdf),  # unsigned
        lambda tag: signer.sign(_fax(tag, [Attachment(b"not a pdf", filename="x.pdf")])),
        lambda tag: signer.sign(_fax(tag, [Attachment(_PDF[:300], filename="cut.pdf")])),
        lambda tag: signer.sign(_fax(tag, [Attachment(make_encrypted_pdf(), filename="l.pdf")])),
        lambda tag: signer.sign(_fax(tag, [])),  # nothing to fax
        lambda tag: signer.sign(
            _fax(
                tag,
                pdf,
                subject="$(id) `id`\n;rm -rf /",
                subject_charset="utf-8",
                extra_headers=[("From", "x@y")],
            )
        ),
        lambda tag: signer.sign(
            b"From: alice@example.jp\r\nTo: "
            + FAX.encode()
            + b"\r\nMessage-ID: <"
            + tag.encode()
            + b"@example.jp>\r\nMIME-Version: 1.0\r\n"
            + nested
        ),
    ]


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def final(result: SendResult) -> tuple[int, str]:
    if result.data is not None:
        return result.data.code, result.data.text
    if result.rcpts:
        code, text = max(result.rcpts.values())
        return code, text
    return result.mail


def test_concurrent_mixed_load(
    start_milter: StartMilter, make_postfix: MakePostfix, dkim_keys: dict[str, Signer]
) -> None:
    milter: MilterProcess = start_milter(None, POLICY)
    postfix: PostfixInstance = make_postfix(milter)
    signer = dkim_keys["example.jp"]
    hostile = hostile_corpus(signer)
    ordinary = build_message(from_addr="carol@other.example", to=["bob@example.jp"])
    lock = threading.Lock()
    answers: Counter[tuple[str, int]] = Counter()
    wrong: list[tuple[str, int, str]] = []
    errors: list[str] = []

    def one(rng: random.Random, tag: str) -> None:
        roll = rng.random()
        if roll < 0.4:
            kind, result = (
                "ordinary",
                postfix.send("carol@other.example", ["bob@example.jp"], ordinary),
            )
        elif roll < 0.7:
            message = signer.sign(_fax(tag, [Attachment(_PDF, filename="a.pdf")]))
            kind, result = "fax", postfix.send("alice@example.jp", [FAX], message)
        else:
            message = rng.choice(hostile)(tag)
            kind, result = "hostile", postfix.send("alice@example.jp", [FAX], message)
        code, text = final(result)
        ok = {
            "ordinary": code == 250,
            "fax": code == 250 or 400 <= code < 500,  # 451 4.3.2 when every renderer is busy
            "hostile": 500 <= code < 600,
        }[kind]
        with lock:
            answers[kind, code] += 1
            if not ok:
                wrong.append((kind, code, text))

    def client(n: int, until: float) -> None:
        rng = random.Random(n)
        sent = 0
        while time.monotonic() < until:
            try:
                one(rng, f"load{n}-{sent}")
            except Exception as e:  # noqa: BLE001  # every failure is reported below
                with lock:
                    errors.append(f"client {n}: {e!r}")
            sent += 1

    # Warm up (first imports, first gs run, allocator arenas) before measuring.
    warm = random.Random(99)
    for n in range(10):
        one(warm, f"warm{n}")
    assert milter.pid is not None
    fds_before, rss_before = fds(milter.pid), rss_kib(milter.pid)
    until = time.monotonic() + SECONDS
    clients = [threading.Thread(target=client, args=(n, until)) for n in range(CLIENTS)]
    for t in clients:
        t.start()
    rss_series: list[int] = []  # a tenth of the run apart: growth that levels off is no leak
    while any(t.is_alive() for t in clients) and time.monotonic() < until + 300:
        rss_series.append(rss_kib(milter.pid) // 1024)
        time.sleep(min(SECONDS / 10, max(0.0, until - time.monotonic())) or 1)
    for t in clients:
        t.join(1)
    assert not any(t.is_alive() for t in clients), "a client hung"
    time.sleep(2)  # libmilter closes a finished connection's thread shortly after QUIT
    fds_after, rss_after = fds(milter.pid), rss_kib(milter.pid)
    total = sum(answers.values())
    print(
        f"\nload: {SECONDS:g} s, {CLIENTS} clients, {total} mails, answers {dict(answers)}; "
        f"fds {fds_before} -> {fds_after}; RSS {rss_before} -> {rss_after} KiB; "
        f"call files {len(callfiles(milter))}; RSS MiB over time {rss_series}"
    )
    assert errors == [], errors[:5]
    assert wrong == [], wrong[:5]
    assert answers["fax", 250] > 0 and answers["ordinary", 250] > 0
    assert milter.running()
    assert fds_after <= fds_before + 2, (fds_before, fds_after)
    assert rss_after <= rss_before * 1.5 + 20_000, (rss_before, rss_after)
    # One call owed (placed, or waiting for its number), one queued job per 250 to a fax
    # recipient (the warm-up's included).
    queued = [s for _, s in job_rows(milter) if s == "queued"]
    assert len(owed_calls(milter)) == len(queued) == answers["fax", 250]
    assert list((spool_dir(milter) / "faxmail-staging").iterdir()) == []
