"""End to end: faxmail owns its outbound queue, measured against far lines that can be busy.

Issue 17's "Done when", on the project's real stack (tests/infra/gateway.py: Postfix, the
milter, Asterisk 22 with the shipped dialplan, notify from this checkout) and a far end
(tests/e2e/e2e-remote.conf, tests/infra/farend.py) whose lines behave as the phone network's:

    faxes mailed at once ──▶ faxmail ──▶ calls over Local channels ──▶ [e2e-remote]
        03-5555-000X  one fax machine on ONE line: a second call at once hears busy
        03-5555-1XXX  machines behind ONE 2-channel trunk: a third call hears congestion
        03-5555-2XXX  a machine that drops the first call it answers, mid-page

What each test counts comes from Asterisk's own log (the far end logs every arrival with the
number of calls then on its line), not from faxmail: busy/congested attempts and the most
calls on a line at once.

Before faxmail owned its queue these failed the way issue 17 describes (every accepted fax was
a call file at once, so the calls collided). The four take about 6 minutes in all
(single-page faxes of about 15 s on the line, one after another where the line demands it).
Run only these:
``.venv/bin/pytest -q tests/test_e2e_queue.py``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import attach_log
from faxmail.core.queuepolicy import Fallback
from infra.asterisk import StartAsterisk
from infra.dkimkeys import Signer
from infra.farend import (
    TRUNK,
    TRUNK_CHANNELS,
    FarEndWatch,
    LineRecord,
    dialled,
    fail_first_number,
    one_line_number,
    trunk_number,
)
from infra.faxbatch import SENDER, ResultMail, mail_at_once, wait_for_results
from infra.faxstate import job_rows
from infra.gateway import Gateway, GatewayError, asterisk_host_user, build_gateway
from infra.protocols import MakePostfix, StartMilter
from infra.queuepolicies import line, queue_policy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.asterisk,
    pytest.mark.postfix,
]

#: Seconds a single-page call may take, notify included, on a busy machine (about 15 s idle).
CALL_BUDGET = 45


#: What the call after the failed one changes (retry.fallbacks in the policy).
FALLBACK = Fallback(ecm=False, max_rate=9600)


def policy(name: str, channels: int, fallbacks: str = "") -> str:
    return queue_policy(line(name, channels), max_retries=2, fallbacks=fallbacks)


@pytest.fixture(scope="session")
def asterisk_owner() -> tuple[int, int]:
    try:
        return asterisk_host_user()
    except GatewayError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def make_gateway(
    request: pytest.FixtureRequest,
    workdir: Path,
    asterisk_owner: tuple[int, int],
    start_milter: StartMilter,
    make_postfix: MakePostfix,
    start_asterisk: StartAsterisk,
) -> Iterator[Callable[[str], Gateway]]:
    """Factory: the gateway with this policy. One per test: Asterisk starts in under a
    second here, and a fresh one keeps the tests apart (astdb, call files left retrying)."""
    made: list[Gateway] = []

    def make(policy_yaml: str) -> Gateway:
        gateway = build_gateway(
            workdir,
            policy_yaml,
            owner=asterisk_owner,
            start_milter=start_milter,
            make_postfix=make_postfix,
            start_asterisk=start_asterisk,
        )
        made.append(gateway)
        attach_log(request, "faxmail-notify log", gateway.notify_log)
        attach_log(request, "dispatcher log", gateway.dispatcher_log)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


# ---------------------------------------------------------------- one batch, its figures


@dataclass(frozen=True)
class Figures:
    """How a batch went: from the result mails and from the far end's line."""

    sent: int  # result mails "Fax sent"
    failed: int  # result mails "[FAILED]"
    refused: int  # calls the far end answered with busy or congestion
    max_calls: int  # the most calls on the far end's line at once


@dataclass(frozen=True)
class Batch:
    results: list[ResultMail]
    line: LineRecord
    jobs: dict[str, str]  # job id -> state in the store
    seconds: float  # from the first 250 to the last result mail

    @property
    def figures(self) -> Figures:
        sent = sum(1 for r in self.results if r.sent)
        return Figures(sent, len(self.results) - sent, self.line.refused, self.line.max_calls)


def fax_batch(gateway: Gateway, signer: Signer, numbers: list[str], line: str) -> Batch:
    """Mail a fax to each number at once; wait for every result mail and for the gateway
    to be idle; what the far end's ``line`` saw meanwhile."""
    watch = FarEndWatch(gateway.asterisk)
    accepted = mail_at_once(gateway.postfix, signer, numbers)
    assert [a.reply[:4] for a in accepted] == ["250 "] * len(numbers), accepted
    # Calls one after another where one line must carry them, plus the slowest one's slack.
    timeout = 60 + CALL_BUDGET * len(numbers)
    results, last = wait_for_results(gateway.postfix, SENDER, len(numbers), timeout)
    gateway.wait_until_idle(timeout=90)
    # Nothing more came once everything was over: exactly the mails counted above.
    assert len(gateway.postfix.messages(SENDER)) == len(results)
    jobs = {str(job): str(state) for job, state in job_rows(gateway.milter)}
    seconds = last - min(a.at for a in accepted)
    return Batch(results, watch.read().line(line), jobs, seconds)


def assert_one_result_per_job(batch: Batch) -> None:
    per_job = collections.Counter(r.job for r in batch.results)
    assert per_job == collections.Counter(list(batch.jobs)), (per_job, batch.jobs)
    assert set(batch.jobs.values()) == {"sent"}, batch.jobs


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("faxes", [4, 10])
def test_faxes_to_one_line_go_one_after_another_without_busy(
    make_gateway: Callable[[str], Gateway], dkim_keys: dict[str, Signer], faxes: int
) -> None:
    """A small office mails the morning's orders to one customer with one fax line. Our
    line has channels to spare (4): only "one call per number at a time" keeps the calls
    apart, so none of them meets the far machine busy."""
    number = one_line_number(1)
    gateway = make_gateway(policy("office", channels=4))
    batch = fax_batch(gateway, dkim_keys["example.jp"], [number] * faxes, dialled(number))

    assert batch.figures == Figures(sent=faxes, failed=0, refused=0, max_calls=1), batch.figures
    assert_one_result_per_job(batch)
    assert len(batch.line.answered) == faxes  # one call each: no retry was needed
    print(f"{faxes} faxes to one line: {batch.figures}, {batch.seconds:.0f} s")


def test_ten_faxes_over_a_two_channel_trunk_never_more_than_two_calls(
    make_gateway: Callable[[str], Gateway], dkim_keys: dict[str, Signer]
) -> None:
    """Ten faxes to ten numbers, all through a trunk of two channels: faxmail places at
    most two calls at once, so the far end never sees a third (it would answer congestion)."""
    gateway = make_gateway(policy("trunk", channels=TRUNK_CHANNELS))
    numbers = [trunk_number(n) for n in range(1, 11)]
    batch = fax_batch(gateway, dkim_keys["example.jp"], numbers, TRUNK)

    assert batch.figures == Figures(sent=10, failed=0, refused=0, max_calls=2), batch.figures
    assert_one_result_per_job(batch)
    assert sorted(a.number for a in batch.line.answered) == sorted(map(dialled, numbers))
    print(f"10 faxes over 2 channels: {batch.figures}, {batch.seconds:.0f} s")


def test_failed_fax_is_sent_again_with_the_policy_fallback(
    make_gateway: Callable[[str], Gateway], dkim_keys: dict[str, Signer]
) -> None:
    """The far machine drops the first call it answers, mid-page. faxmail calls again after
    fax.retry_time with retry.fallbacks[0] (ECM off, at most 9600 bit/s); that call sends
    the fax, and the one result mail's history names the failed attempt and the fallback."""
    number = fail_first_number(1)
    fallbacks = f"  fallbacks:\n    - {{ecm: false, max_rate: {FALLBACK.max_rate}}}\n"
    gateway = make_gateway(policy("office", channels=1, fallbacks=fallbacks))
    watch = FarEndWatch(gateway.asterisk)
    t0 = time.monotonic()
    (accepted,) = mail_at_once(gateway.postfix, dkim_keys["example.jp"], [number])
    assert accepted.ok, accepted

    (result,), _ = wait_for_results(gateway.postfix, SENDER, 1, timeout=60 + 3 * CALL_BUDGET)
    gateway.wait_until_idle(timeout=90)
    far_end = [(c.number, c.result) for c in watch.read().fail_first]
    assert far_end == [(dialled(number), "dropped"), (dialled(number), "received")], far_end
    assert result.sent, result.text
    assert len(result.attempts) == 2, result.text
    failed, fallback = result.attempts
    assert "fax failed" in failed and FALLBACK.describe() not in failed, result.text
    assert "fax sent" in fallback and FALLBACK.describe() in fallback, result.text
    # The fallback reached the line: the fax went at 9600 bit/s at most.
    assert result.bitrate is not None and result.bitrate <= 9600, result.text
    assert len(gateway.postfix.messages(SENDER)) == 1
    assert {str(state) for _, state in job_rows(gateway.milter)} == {"sent"}
    print(f"fallback: sent on attempt 2 in {time.monotonic() - t0:.0f} s")
