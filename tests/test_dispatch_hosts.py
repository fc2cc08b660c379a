"""The dispatcher with several Asterisk hosts: lines per host, a host that is down, the TIFF
through the store (enqueue puts it, `faxmail-notify fetch` writes it on the dialling host).

The hosts are fake dialers (the AMI client has its own tests, tests/test_ami.py) except in
the last dispatcher test, which sends a real Originate to the fake manager.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from faxmail.asterisk.callfile import CallFile
from faxmail.asterisk.dialer import AmiDialer, CallFileDialer, DialError, StagedCall
from faxmail.core.asteriskhosts import AmiHost
from faxmail.core.policy import Policy
from faxmail.notify.args import FaxReport
from faxmail.notify.fetch import OutsideFaxDir, fetch_target, on_fetch, remove_fetched
from faxmail.notify.main import main as notify_main
from faxmail.notify.sent import UnknownJob, on_answered, on_sent
from faxmail.outbound.enqueue import Enqueuer
from faxmail.queue.lines import lines_for
from faxmail.store.model import JobState, RateLimits
from infra.fakeami import FakeAmi
from test_dispatch import T0, World
from test_notify_dialplan import Dialplan, decode_escapes, substitute

HOSTS = [
    {"name": "a", "channel": "Local/{number}@x", "channels": 1, "host": "pbx1"},
    {"name": "b", "channel": "Local/{number}@x", "channels": 1, "host": "pbx2"},
]


@dataclass
class FakeHost:
    """A dialler that records what it was given, or fails as told."""

    host: str
    down_for_s: float = 60.0
    fail: DialError | None = None
    dialled: list[tuple[str, int]] = field(default_factory=list)

    def stage(self, job_id: str, round_: int, call: CallFile) -> StagedCall:
        return StagedCall(job_id, round_, call)

    def dial(self, staged: StagedCall) -> None:
        if self.fail is not None:
            raise self.fail
        self.dialled.append((staged.job_id, staged.round))

    def discard(self, staged: StagedCall) -> None:
        pass


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[tuple[World, FakeHost, FakeHost]]:
    w = World(tmp_path, Policy.model_validate({"lines": HOSTS}))
    pbx1, pbx2 = FakeHost("pbx1"), FakeHost("pbx2")
    w.dispatcher.dialers = {"local": CallFileDialer(w.spool), "pbx1": pbx1, "pbx2": pbx2}
    yield w, pbx1, pbx2
    w.store.close()


def test_calls_spread_over_the_hosts_within_their_lines(
    two_hosts: tuple[World, FakeHost, FakeHost],
) -> None:
    w, pbx1, pbx2 = two_hosts
    for n in range(3):
        w.add(f"d{n}", number=f"+8131234567{n}", created=T0.timestamp() - 10 + n)
    w.dispatcher.tick()
    assert pbx1.dialled == [("d0", 1)] and pbx2.dialled == [("d1", 1)]  # d2: both lines full
    w.dispatcher.tick()
    assert len(pbx1.dialled) + len(pbx2.dialled) == 2
    assert w.calls() == []  # no call file: neither line is this host's


def test_a_host_that_is_down_leaves_its_calls_to_the_other(
    two_hosts: tuple[World, FakeHost, FakeHost], caplog: pytest.LogCaptureFixture
) -> None:
    w, pbx1, pbx2 = two_hosts
    pbx2.fail = DialError("cannot connect to 127.0.0.1:5038: refused", host_down=True)
    w.add("e0", number="+81312345670", created=T0.timestamp() - 10)
    w.add("e1", number="+81312345671", created=T0.timestamp() - 9)
    with caplog.at_level(logging.INFO, logger="faxmail.dispatch"):
        w.dispatcher.tick()
    # e1 went to pbx2, which failed: given back, pbx2 left out; pbx1's line is full (e0).
    assert pbx1.dialled == [("e0", 1)] and pbx2.dialled == []
    row = w.store.dispatch_row("e1")
    assert row is not None and row.host is None and row.round == 1  # waits, claim released
    assert "asterisk host pbx2 down for 60 s" in caplog.text
    assert [e for _, e, _ in w.store.events("e1")][-1] == "undialled"
    w.dispatcher.tick()  # pbx2 is not tried while down
    assert pbx2.dialled == [] and w.store.dispatch_row("e1").host is None  # type: ignore[union-attr]
    w.store.record_attempt("e0", 1, 1, "success", JobState.SENT)
    assert w.store.claim_result("e0", JobState.SENT, "fax-sent")  # type: ignore[arg-type]
    w.dispatcher.tick()
    assert pbx1.dialled == [("e0", 1), ("e1", 1)]  # the other host sent it
    pbx2.fail = None
    w.clock.now = T0 + timedelta(seconds=61)
    w.add("e2", number="+81312345672", created=T0.timestamp() + 2)
    w.dispatcher.tick()
    assert pbx2.dialled == [("e2", 1)]  # back after down_for_s


def test_another_hosts_call_holds_the_line_the_store_has_it_on(
    two_hosts: tuple[World, FakeHost, FakeHost],
) -> None:
    """Two faxmail hosts on one store: the other host's call on line b (pbx2) is counted on
    b, not on a (the first line for its number), so this host uses a's free channel."""
    w, pbx1, pbx2 = two_hosts
    w.add("o0", number="+81312345670", created=T0.timestamp() - 10)
    w.add("o1", number="+81312345671", created=T0.timestamp() - 9)
    lease = T0.timestamp() + 3600
    assert w.store.claim_call("o0", 1, "host-b", lease, number="+81312345670", line="b", channels=1)
    assert w.store.dispatch_row("o0").line == "b"  # type: ignore[union-attr]
    w.dispatcher.tick()
    assert pbx1.dialled == [("o1", 1)] and pbx2.dialled == []


def test_a_call_that_may_ring_is_not_given_back(
    two_hosts: tuple[World, FakeHost, FakeHost],
) -> None:
    w, pbx1, pbx2 = two_hosts
    pbx1.fail = DialError("Originate: no answer in time", host_down=True, maybe_placed=True)
    w.add("f0", created=T0.timestamp())
    w.dispatcher.tick()
    row = w.store.dispatch_row("f0")
    assert row is not None and row.host == "host-a"  # kept: a second call could dial twice
    w.dispatcher.tick()
    assert pbx2.dialled == []  # and it is not placed on the other host either


def test_a_line_on_an_unknown_host_is_not_dialled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [{"name": "a", "channel": "Local/{number}@x", "host": "nowhere"}]
    w = World(tmp_path, Policy.model_validate({"lines": lines}))
    try:
        w.add("a0")
        w.dispatcher.tick()
        assert "names host 'nowhere' (lines[].host)" in caplog.text
        assert w.store.dispatch_row("a0").host is None  # type: ignore[union-attr]
    finally:
        w.store.close()


def test_without_hosts_the_call_file_is_as_before(tmp_path: Path) -> None:
    w = World(tmp_path, Policy())
    try:
        w.add("b0")
        w.dispatcher.tick()
        (call,) = w.calls()
        assert call["name"] == "b0.call" and "FAXMAIL_FETCH" not in call
        assert call["FAXFILE"] == str(w.spool.tiff("b0"))
    finally:
        w.store.close()


def test_a_real_originate_reaches_the_manager(tmp_path: Path) -> None:
    ami = FakeAmi()
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    lines = [{"name": "a", "channel": "PJSIP/{number}@trunk", "host": "pbx1"}]
    w = World(tmp_path, Policy.model_validate({"lines": lines}))
    try:
        config = AmiHost(ami=ami.endpoint, username="faxmail", secret_file=secret)
        w.dispatcher.dialers = {"pbx1": AmiDialer("pbx1", config)}
        w.add("c0ffee00")
        w.dispatcher.tick()
        (action,) = ami.originates()
        headers = dict(action)
        variables = dict(v.split("=", 1) for k, v in action if k == "Variable")
        assert headers["Channel"] == "PJSIP/0312345678@trunk"
        assert headers["Context"] == "faxmail-send" and headers["Exten"] == "send"
        assert variables["FAXMAIL_JOB"] == "c0ffee00" and variables["FAXMAIL_ROUND"] == "1"
        assert variables["FAXFILE"] == "/var/spool/asterisk/fax/c0ffee00.tif"
        assert w.store.dispatch_row("c0ffee00").host == "host-a"  # type: ignore[union-attr]
    finally:
        w.store.close()
        ami.close()


# ------------------------------------------------------------------ lines shared by hosts


def test_the_same_numbers_may_be_on_one_line_per_host() -> None:
    lines = [
        {"name": "a", "channel": "P/{number}", "host": "pbx1"},
        {"name": "b", "channel": "P/{number}", "host": "pbx2"},
        {"name": "a81", "channel": "P/{number}", "host": "pbx1", "prefixes": ["+81"]},
        {"name": "b81", "channel": "P/{number}", "host": "pbx2", "prefixes": ["+81"]},
    ]
    policy = Policy.model_validate({"lines": lines})
    assert lines_for("+81312345678", policy) == ("a81", "b81")
    assert lines_for("+12125550100", policy) == ("a", "b")
    same_host = [*lines[:2], {**lines[2], "name": "c"}, {**lines[2], "name": "d"}]
    with pytest.raises(ValidationError, match="prefix \\+81 is on two lines: c, d"):
        Policy.model_validate({"lines": same_host})


# ------------------------------------------------------------------ the TIFF through the store


def test_enqueue_puts_the_fax_in_the_store_for_remote_hosts(tmp_path: Path) -> None:
    w = World(tmp_path, Policy())
    try:
        job = w.add("d0")
        rendered = tmp_path / "rendered.tif"
        rendered.write_bytes(b"II*\0the fax")
        enqueuer = Enqueuer(w.spool, w.store, put_documents=True)
        again = job.__class__(**{**job.__dict__, "id": "d1", "digest": "d1", "message_id": "<d1>"})
        enqueuer.enqueue(again, rendered, fax=w.policy.fax, limits=RateLimits(None, None))
        assert w.store.document("d1") == b"II*\0the fax"
        assert w.store.document("d0") is None  # one-host sites keep only the file
        assert w.store.claim_result("d1", JobState.SENT, "fax-sent")  # type: ignore[arg-type]
        assert w.store.document("d1") is None  # over: nothing left to fetch
    finally:
        w.store.close()


def test_a_failed_fax_on_a_remote_host_is_called_again_from_the_stores_copy(
    tmp_path: Path,
) -> None:
    """notify on a remote Asterisk host never sees the milter's TIFF: a fax that failed there
    (its call cut off) is called again, since the store still has the fax to fetch."""
    w = World(tmp_path, Policy.model_validate({"lines": HOSTS, "retry": {"max_attempts": 3}}))
    cut_off = FaxReport("FAILED", "HANGUP", "", 0, 0, "", "", "")
    lease = T0.timestamp() + 3600
    try:
        for job_id, number in (("r0", "+81312345670"), ("r1", "+81312345671")):
            job = w.add(job_id, number=number)
            Path(job.tiff).unlink()  # the milter's file: not on this host
            assert w.store.claim_call(job_id, 1, "mx1", lease, number=number, line="b", channels=2)
            on_answered(w.ctx, job_id, 1, 1)
        w.store.put_document("r0", b"II*\0fax")
        assert on_sent(w.ctx, "r0", 1, 1, cut_off) is None  # no result mail: not over
        row = w.store.dispatch_row("r0")
        assert row is not None and row.round == 2 and row.host is None  # waits for call 2
        assert w.state("r0") == JobState.QUEUED
        # Neither the file nor the store's copy: nothing to call again with.
        assert on_sent(w.ctx, "r1", 1, 1, cut_off) is not None
        assert w.state("r1") == JobState.FAILED
    finally:
        w.store.close()


def test_fetch_writes_the_tiff_only_where_the_call_said(tmp_path: Path) -> None:
    w = World(tmp_path, Policy())
    try:
        w.add("e0")
        w.store.put_document("e0", b"II*\0fax")
        target = w.spool.tiff("e0")
        target.unlink()
        assert on_fetch(w.ctx, "e0", target) == target and target.read_bytes() == b"II*\0fax"
        for elsewhere in (
            w.spool.faxes / "e1.tif",
            w.spool.faxes / ".." / "e0.tif",
            Path("/etc/e0.tif"),
            w.spool.faxes / "sub" / "e0.tif",
        ):
            with pytest.raises(OutsideFaxDir):
                fetch_target(w.spool, "e0", elsewhere)
        with pytest.raises(UnknownJob):
            on_fetch(w.ctx, "e1", w.spool.tiff("e1"))
        remove_fetched(w.ctx, "e0", target)
        assert not target.exists()
    finally:
        w.store.close()


def test_notify_fetch_refuses_what_is_not_its_alphabet(tmp_path: Path) -> None:
    # The dialplan FILTER()s FAXFILE to letters, digits and / . _: a fax dir of those only.
    faxes = Path(tempfile.mkdtemp(prefix="faxmailfetch", dir="/tmp"))
    try:
        w = World(tmp_path, Policy())
        w.store.put_document("0123abcd0123abcd", b"II*\0fax")
        w.store.close()
        settings = tmp_path / "settings.yaml"
        values = w.settings.model_dump(mode="json", exclude_defaults=True)
        values["asterisk"]["fax_dir"] = str(faxes)
        settings.write_text(yaml.safe_dump(values))
        job = "0123abcd0123abcd"
        base = ["--settings", str(settings), "fetch", f"--job={job}"]
        assert notify_main([*base, "--file=/tmp/x;touch /tmp/owned"]) == 65
        assert notify_main([*base, f"--file={faxes}/../{job}.tif"]) == 65
        assert notify_main([*base, f"--file={faxes}/other.tif"]) == 65
        assert notify_main([*base, "--file=/etc/passwd"]) == 65
        assert notify_main([*base[:3], "--job=../x", f"--file={faxes}/{job}.tif"]) == 65
        assert list(faxes.iterdir()) == []
        assert notify_main([*base, f"--file={faxes}/{job}.tif"]) == 0
        assert (faxes / f"{job}.tif").read_bytes() == b"II*\0fax"
        assert notify_main([*base, "--remove", f"--file={faxes}/{job}.tif"]) == 0
        assert list(faxes.iterdir()) == []
        other = "0123abcd0123abce"
        assert notify_main([*base[:3], f"--job={other}", f"--file={faxes}/{other}.tif"]) == 66
    finally:
        shutil.rmtree(faxes)


def test_the_fetch_lines_pass_only_filtered_values() -> None:
    """The dialplan's fetch steps, substituted as Asterisk does: what reaches /bin/sh."""
    plan = Dialplan()
    calls = [
        call[len("System(") : -1]
        for context in ("faxmail-send",)
        for _, label, call in plan.contexts[context]
        if label in ("fetch", "unfetch")
    ]
    assert len(calls) == 2
    hostile = {
        "FAXMAIL_JOB": "0123abcd;touch${IFS}/tmp/owned",
        "FAXFILE": "/var/spool/asterisk/fax/$(id)`id`;x y|z&\\x22.tif",
    }
    for call in calls:
        line = decode_escapes(substitute(call, {**plan.globals, **hostile}))
        for bad in ("$(", "`", ";", "|", "&", '"', "${"):
            assert bad not in line.split(" --settings=")[1], line
        assert "--job=0123abcdced " in line
        assert "--file=/var/spool/asterisk/fax/ididxyzx22.tif" in line
