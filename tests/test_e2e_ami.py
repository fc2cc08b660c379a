"""End to end: one faxmail host dials two Asterisk hosts through AMI Originate (issue 15).

The stack is tests/infra/amigateway.py: Postfix and faxmail-milter (with its dispatcher) on
this host, two Asterisk 22 instances (chroot overlays) with AMI on two loopback ports and the
shipped dialplan, which fetches each TIFF from the job store (`faxmail-notify fetch`): the
Asterisk hosts see none of the milter's files, only the job store notify reports to. Each
host has one line of one channel for every number, and its own far end
(tests/e2e/e2e-remote.conf: the 2-channel trunk of 03-5555-1XXX, which logs every arrival).

One test, two phases (single-page faxes of about 15 s on the line each):
1. four faxes at once: spread over both hosts, never more than one call on a host's line,
   all sent, one result mail each;
2. pbx2 stopped, two faxes more: the dispatcher finds pbx2 down (AMI connect refused), gives
   the claim back, and pbx1 sends both.
Run only this: ``.venv/bin/pytest -q tests/test_e2e_ami.py``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import attach_log
from infra.amigateway import TwoHostGateway, build_two_host_gateway
from infra.asterisk import StartAsterisk
from infra.dkimkeys import Signer
from infra.farend import TRUNK, FarEndWatch, dialled, trunk_number
from infra.faxbatch import SENDER, mail_at_once, wait_for_results
from infra.faxstate import job_rows
from infra.gateway import GatewayError, asterisk_host_user
from infra.protocols import MakePostfix, StartMilter
from infra.queuepolicies import host_lines, queue_policy

pytestmark = [pytest.mark.e2e, pytest.mark.asterisk, pytest.mark.postfix]

#: tests/e2e/e2e-remote.conf: every call to it hears busy.
ALWAYS_BUSY = "03-9876-5432"
#: Seconds a single-page call may take, notify included, on a busy machine (about 15 s idle).
CALL_BUDGET = 45

POLICY = queue_policy(host_lines(1))


@pytest.fixture
def make_gateway(
    request: pytest.FixtureRequest,
    workdir: Path,
    start_milter: StartMilter,
    make_postfix: MakePostfix,
    start_asterisk: StartAsterisk,
) -> Callable[[str], TwoHostGateway]:
    try:
        owner = asterisk_host_user()
    except GatewayError as e:
        pytest.fail(str(e), pytrace=False)

    def make(policy_yaml: str) -> TwoHostGateway:
        made = build_two_host_gateway(
            workdir,
            policy_yaml,
            owner=owner,
            start_milter=start_milter,
            make_postfix=make_postfix,
            start_asterisk=start_asterisk,
        )
        for host in made.asterisks:
            attach_log(request, f"faxmail-notify log ({host})", lambda h=host: made.notify_log(h))
        return made

    return make


def results_per_job(count: int, gateway: TwoHostGateway) -> collections.Counter[str]:
    results, _ = wait_for_results(gateway.postfix, SENDER, count, 60 + CALL_BUDGET * count)
    return collections.Counter(r.job for r in results if r.sent)


def test_faxes_spread_over_two_asterisk_hosts_and_one_takes_over(
    make_gateway: Callable[[str], TwoHostGateway], dkim_keys: dict[str, Signer]
) -> None:
    gateway = make_gateway(POLICY)
    signer = dkim_keys["example.jp"]
    pbx1, pbx2 = gateway.asterisks["pbx1"], gateway.asterisks["pbx2"]

    # Phase 1: four faxes, both hosts up.
    watch1, watch2 = FarEndWatch(pbx1), FarEndWatch(pbx2)
    numbers = [trunk_number(n) for n in range(1, 5)]
    accepted = mail_at_once(gateway.postfix, signer, numbers)
    assert all(a.ok for a in accepted), accepted
    sent = results_per_job(4, gateway)
    line1, line2 = watch1.read().line(TRUNK), watch2.read().line(TRUNK)
    assert sum(sent.values()) == 4 and set(sent.values()) == {1}, sent  # one mail per job
    assert len(line1.answered) >= 1 and len(line2.answered) >= 1  # both hosts dialled
    assert len(line1.answered) + len(line2.answered) == 4
    assert line1.max_calls == 1 and line2.max_calls == 1  # each host's line: one channel
    assert line1.refused == 0 and line2.refused == 0
    answered = sorted(a.number for a in (*line1.answered, *line2.answered))
    assert answered == sorted(map(dialled, numbers))
    print(f"phase 1: pbx1 {len(line1.answered)} calls, pbx2 {len(line2.answered)} calls")
    assert "fetched its fax from the store" in gateway.notify_log("pbx1")
    assert "fetched its fax from the store" in gateway.notify_log("pbx2")

    # Phase 2: pbx2 is gone; its share goes to pbx1.
    pbx2.stop()
    watch1 = FarEndWatch(pbx1)
    more = [trunk_number(n) for n in range(5, 7)]
    accepted = mail_at_once(gateway.postfix, signer, more)
    assert all(a.ok for a in accepted), accepted
    sent = results_per_job(6, gateway)
    assert sum(sent.values()) == 6 and set(sent.values()) == {1}, sent
    line1 = watch1.read().line(TRUNK)
    assert sorted(a.number for a in line1.answered) == sorted(map(dialled, more))
    assert line1.max_calls == 1
    assert "asterisk host pbx2 down for 600 s" in gateway.milter.log()
    assert {str(state) for _, state in job_rows(gateway.milter)} == {"sent"}
    assert len(gateway.postfix.messages(SENDER)) == 6  # nothing more came
    print(f"phase 2 (pbx2 stopped): pbx1 {len(line1.answered)} calls")


def test_an_unanswered_originate_is_reported_as_a_call_file_attempt_is(
    make_gateway: Callable[[str], TwoHostGateway], dkim_keys: dict[str, Signer]
) -> None:
    """An Originate that is not answered runs the send context's `failed` extension, as a
    call file's attempt does (REASON 5, attempt 1): notify records it, and with one real try
    (busy counted as one) the job fails with its one result mail naming the busy call."""
    one_try = "  max_attempts: 1\n  max_busy_attempts: 0\n"
    gateway = make_gateway(POLICY.replace("  max_attempts: 3\n  busy_retry_s: 5\n", one_try))
    gateway.asterisks["pbx2"].stop()  # one host is enough; pbx1 then takes the call
    (accepted,) = mail_at_once(gateway.postfix, dkim_keys["example.jp"], [ALWAYS_BUSY])
    assert accepted.ok, accepted
    (result,), _ = wait_for_results(gateway.postfix, SENDER, 1, 60 + CALL_BUDGET)
    assert not result.sent, result.text
    (attempt,) = result.attempts
    assert "busy" in attempt, result.text
    log = gateway.notify_log("pbx1")
    assert "fetched its fax" not in log  # never answered: nothing to fetch
    assert {str(state) for _, state in job_rows(gateway.milter)} == {"failed"}
