"""End to end: two faxmail hosts and two Asterisk hosts on one PostgreSQL job store (issue 15).

The stack is tests/infra/amigateway.py with ``mx=2``: two faxmail-milter processes (each with
its dispatcher thread) behind two private Postfix instances, a private PostgreSQL server
(tests/infra/postgres.py) holding the one job store, and two Asterisk 22 instances (chroot
overlays) with AMI on loopback ports. Each Asterisk host has one line of 2 channels for every
number, and its own far end (tests/e2e/e2e-remote.conf: the 2-channel trunk of 03-5555-1XXX,
which logs every arrival and hang-up). The Asterisk hosts see none of the milters' files:
their dialplan fetches each TIFF from the store, and their notify (state directory of its
own) reports to the same store.url.

One test, two phases (single-page faxes of about 15 s on the line each):
1. twenty faxes to ten numbers (two each), mailed at once, half through each MX: all sent,
   one result mail each; each Asterisk host's line never carries more than its 2 channels
   (counted from Asterisk's own log), no number ever has two calls at once across the two
   hosts, no call of a job placed twice;
2. eight faxes more, and pbx2 stopped as soon as it answered a call of theirs: its waiting
   jobs go out on pbx1; the calls cut off on pbx2 are retried there (a call that Asterisk
   ends reports itself), so all eight are sent.
Run only this: ``.venv/bin/pytest -q tests/test_e2e_multi.py``.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from conftest import attach_log
from faxmail.store.model import JobFilter, JobState
from faxmail.store.postgres import PostgresStore
from infra.amigateway import TwoHostGateway, build_two_host_gateway
from infra.asterisk import StartAsterisk
from infra.dkimkeys import Signer
from infra.farend import (
    TRUNK,
    TRUNK_CHANNELS,
    FarEndWatch,
    LineRecord,
    dialled,
    most_calls_per_number,
    trunk_number,
)
from infra.faxbatch import SENDER, mail_through, wait_for_results
from infra.gateway import GatewayError, asterisk_host_user
from infra.postgres import PostgresServer
from infra.protocols import MakePostfix, StartMilter
from infra.queuepolicies import host_lines, queue_policy
from infra.storekinds import migrated_database

pytestmark = [pytest.mark.e2e, pytest.mark.asterisk, pytest.mark.postfix]

#: Seconds a single-page call may take, notify included, on a busy machine (about 15 s idle).
CALL_BUDGET = 45
CHANNELS = TRUNK_CHANNELS  # each host's line: as many channels as its far end's trunk

POLICY = queue_policy(host_lines(CHANNELS))
_DIALLING = re.compile(r"dialling job=(\S+) call=(\d+) line=(\S+)")


@pytest.fixture
def gateway(
    request: pytest.FixtureRequest,
    workdir: Path,
    pg_server: PostgresServer,
    start_milter: StartMilter,
    make_postfix: MakePostfix,
    start_asterisk: StartAsterisk,
) -> TwoHostGateway:
    try:
        owner = asterisk_host_user()
    except GatewayError as e:
        pytest.fail(str(e), pytrace=False)
    made = build_two_host_gateway(
        workdir,
        POLICY,
        owner=owner,
        start_milter=start_milter,
        make_postfix=make_postfix,
        start_asterisk=start_asterisk,
        mx=2,
        store_url=migrated_database(pg_server),
    )
    for host in made.asterisks:
        attach_log(request, f"faxmail-notify log ({host})", lambda h=host: made.notify_log(h))
    return made


def dialled_calls(gateway: TwoHostGateway) -> collections.Counter[tuple[str, int]]:
    """(job, call) → how often a dispatcher, on either faxmail host, dialled it."""
    return collections.Counter(
        (job, int(call))
        for milter in gateway.milters
        for job, call, _ in _DIALLING.findall(milter.log())
    )


def sent_results(gateway: TwoHostGateway, count: int) -> collections.Counter[str]:
    results, _ = wait_for_results(gateway.postfix, SENDER, count, 90 + CALL_BUDGET * count / 2)
    return collections.Counter(r.job for r in results if r.sent)


def wait_for_an_answer(watch: FarEndWatch, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not watch.read().line(TRUNK).answered:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no call answered on the far end within {timeout} s")
        time.sleep(0.2)


def assert_within_lines(lines: Sequence[LineRecord]) -> None:
    for line in lines:
        assert line.max_calls <= CHANNELS, line  # the host's line: never more than its channels
        assert line.refused == 0, line  # nor a call beyond them refused by the far end
    assert set(most_calls_per_number(lines).values()) == {1}  # one call per number, both hosts


def test_two_mx_and_two_asterisk_hosts_on_one_postgres_store(
    gateway: TwoHostGateway, dkim_keys: dict[str, Signer]
) -> None:
    signer = dkim_keys["example.jp"]
    pbx1, pbx2 = gateway.asterisks["pbx1"], gateway.asterisks["pbx2"]

    # Phase 1: twenty faxes, ten numbers twice each, through both MX hosts at once.
    watch1, watch2 = FarEndWatch(pbx1), FarEndWatch(pbx2)
    numbers = [trunk_number(n % 10 + 1) for n in range(20)]
    accepted = mail_through(gateway.postfixes, signer, numbers)
    assert all(a.ok for a in accepted), accepted
    sent = sent_results(gateway, 20)
    assert sum(sent.values()) == 20 and set(sent.values()) == {1}, sent  # one mail per job
    line1, line2 = watch1.read().line(TRUNK), watch2.read().line(TRUNK)
    assert line1.unfinished == 0 and line2.unfinished == 0
    assert_within_lines([line1, line2])
    assert len(line1.answered) >= 1 and len(line2.answered) >= 1  # both hosts dialled
    answered = sorted(a.number for a in (*line1.answered, *line2.answered))
    assert answered == sorted(map(dialled, numbers))  # 20 calls: each job's one
    calls = dialled_calls(gateway)
    assert set(calls.values()) == {1} and len(calls) == 20, calls  # no call placed twice
    assert "fetched its fax from the store" in gateway.notify_log("pbx1")
    assert "fetched its fax from the store" in gateway.notify_log("pbx2")
    by_mx = [len(_DIALLING.findall(milter.log())) for milter in gateway.milters]
    print(
        f"phase 1: pbx1 {len(line1.answered)} calls, pbx2 {len(line2.answered)} calls;"
        f" dialled by mx1 {by_mx[0]}, mx2 {by_mx[1]}"
    )

    # Phase 2: eight faxes more; pbx2 stops as soon as it has answered one of them.
    watch1, watch2 = FarEndWatch(pbx1), FarEndWatch(pbx2)
    more = [trunk_number(n) for n in range(11, 19)]
    accepted = mail_through(gateway.postfixes, signer, more)
    assert all(a.ok for a in accepted), accepted
    wait_for_an_answer(watch2, 60)
    pbx2.stop()
    cut_off = {a.number for a in watch2.read().line(TRUNK).answered}
    sent = sent_results(gateway, 28)
    assert sum(sent.values()) == 28 and set(sent.values()) == {1}, sent
    line1 = watch1.read().line(TRUNK)
    assert_within_lines([line1])
    on_pbx1 = sorted(a.number for a in line1.answered)
    assert set(on_pbx1) == set(map(dialled, more))  # the waiting ones and the cut-off ones
    assert "asterisk host pbx2 down for 600 s" in "".join(m.log() for m in gateway.milters)
    calls = dialled_calls(gateway)
    assert set(calls.values()) == {1}, calls  # retries are new calls, never one call twice
    assert len({job for job, call in calls if call > 1}) >= len(cut_off)  # called again
    store = PostgresStore(gateway.milter.settings["store"]["url"])
    try:
        jobs = store.queries.jobs(JobFilter())
    finally:
        store.close()
    assert len(jobs) == 28 and {job.state for job in jobs} == {JobState.SENT}, jobs
    assert len(gateway.postfix.messages(SENDER)) == 28  # nothing more came
    print(f"phase 2 (pbx2 stopped with {sorted(cut_off)} on its line): pbx1 {on_pbx1}")
