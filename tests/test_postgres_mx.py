"""Two MX hosts on one PostgreSQL job store: two real faxmail-milter processes, each behind its
own private Postfix, sharing a private PostgreSQL server (each test its own database).

What it proves through the real parts: a sender's rate limit and duplicate detection hold
across both hosts, also when both admit at once; the two hosts' dispatchers together never
place more calls on the line than its one channel; PostgreSQL stopped → 451 4.3.0 at SMTP
(the sender's server retries), and faxes are taken again once it is back.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxmail.store.model import JobFilter, JobState
from faxmail.store.postgres import PostgresStore
from infra.dkimkeys import Signer
from infra.dns import DnsServer
from infra.faxstate import final_reply, spool_dir
from infra.mail import Attachment, build_message
from infra.milterproc import MilterProcess
from infra.pdfs import make_pdf
from infra.postfix import PostfixInstance, SendResult
from infra.postgres import PostgresServer, start_postgres
from infra.protocols import MakePostfix, StartMilter
from infra.storekinds import migrated_database

pytestmark = pytest.mark.postfix

FAX = "fax+03-1234-5678@example.jp"
POLICY = """\
fax_address: {domains: [example.jp]}
senders:
  - address: "@example.jp"
limits: {per_hour: 3}
"""
Host = tuple[MilterProcess, PostfixInstance]


@pytest.fixture(scope="module")
def database_server() -> Iterator[PostgresServer]:
    """This module's own server: a test stops and starts it."""
    server = start_postgres(fsync=False)
    yield server
    server.close()


@pytest.fixture
def two_mx(
    database_server: PostgresServer,
    dns: DnsServer,
    start_milter: StartMilter,
    make_postfix: MakePostfix,
) -> tuple[str, list[Host]]:
    url = migrated_database(database_server)
    hosts = []
    for _ in range(2):
        milter = start_milter({"store": {"url": url}}, POLICY)
        hosts.append((milter, make_postfix(milter)))
    return url, hosts


def fax_mail(signer: Signer, message_id: str) -> bytes:
    return signer.sign(
        build_message(
            from_addr="alice@example.jp",
            to=[FAX],
            subject="two hosts",
            body="Please fax this.\n",
            attachments=[Attachment(make_pdf(1), filename="quote.pdf")],
            message_id=message_id,
        )
    )


def answer(result: SendResult) -> str:
    """The answer that decided the mail: RCPT's refusal, else the one after DATA."""
    rcpt = result.rcpts[FAX]
    return f"{rcpt.code} {rcpt.text}" if rcpt.code >= 400 else final_reply(result)


def call_files(hosts: list[Host]) -> list[Path]:
    return [p for milter, _ in hosts for p in (spool_dir(milter) / "outgoing").glob("*.call")]


def store_of(url: str) -> PostgresStore:
    return PostgresStore(url)


def test_rate_limit_and_the_line_hold_across_two_mx_hosts(
    two_mx: tuple[str, list[Host]], dkim_keys: dict[str, Signer]
) -> None:
    url, hosts = two_mx
    signer = dkim_keys["example.jp"]
    mails = [fax_mail(signer, f"<two{n}@example.jp>") for n in range(6)]
    answers: list[str] = []

    def send(n: int) -> None:
        _, postfix = hosts[n % 2]  # three mails through each MX, all at once
        answers.append(answer(postfix.send("alice@example.jp", [FAX], mails[n])))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sum(a.startswith("250") for a in answers) == 3, answers  # per_hour 3, both hosts
    assert sum(a.startswith("450 4.7.1") for a in answers) == 3, answers
    # Three jobs to one number on a one-channel line, two dispatchers: one call, on one host.
    deadline = time.monotonic() + 30
    while not call_files(hosts) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(4)  # more than a dispatcher's tick on both hosts: a second call would be here
    assert len(call_files(hosts)) == 1, call_files(hosts)
    store = store_of(url)
    try:
        assert len(store.dispatch_rows(claimed=True)) == 1
        assert len(store.dispatch_rows(claimed=False)) == 2
    finally:
        store.close()


def test_a_mail_delivered_through_both_mx_hosts_is_one_job(
    two_mx: tuple[str, list[Host]], dkim_keys: dict[str, Signer]
) -> None:
    url, hosts = two_mx
    copy = fax_mail(dkim_keys["example.jp"], "<copy@example.jp>")
    for _, postfix in hosts:  # the sender's server retried on the other MX after a lost 250
        assert final_reply(postfix.send("alice@example.jp", [FAX], copy)).startswith("250")
    store = store_of(url)
    try:
        assert len(store.queries.jobs(JobFilter())) == 1
        assert "duplicate of" in hosts[1][0].log()
    finally:
        store.close()


def test_postgres_stopped_answers_451_and_faxes_are_taken_again_once_it_is_back(
    two_mx: tuple[str, list[Host]],
    database_server: PostgresServer,
    dkim_keys: dict[str, Signer],
) -> None:
    url, hosts = two_mx
    signer = dkim_keys["example.jp"]
    database_server.stop()
    try:
        for n, (_, postfix) in enumerate(hosts):
            refused = answer(postfix.send("alice@example.jp", [FAX], fax_mail(signer, f"<d{n}@x>")))
            assert re.match(r"451 4\.3\.0 ", refused), refused
    finally:
        database_server.start()
    for n, (_, postfix) in enumerate(hosts):
        taken = answer(postfix.send("alice@example.jp", [FAX], fax_mail(signer, f"<u{n}@x>")))
        assert taken.startswith("250"), taken
    store = store_of(url)
    try:
        assert len(store.queries.jobs(JobFilter(states=(JobState.QUEUED,)))) == 2
    finally:
        store.close()
