"""The job commands' parts that need no mail system: times, columns, estimates, the cancel
claim, and the settings errors (exit 78)."""

from __future__ import annotations

import dataclasses
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faxmail.admin.context import parse_since
from faxmail.admin.stats import CALL_SETUP_S, answered_calls, call_seconds, dial_attempts, tally
from faxmail.admin.text import clip, table, width
from faxmail.store.model import Attempt, RateLimits
from faxmail.store.sqlite import SqliteStore
from test_store import BASE, job

BIN = Path(sys.executable).parent


def test_since_spans_and_dates() -> None:
    now = 1_800_000_000.0
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2d", now) == now - 2 * 86400
    assert parse_since("1w", now) == now - 7 * 86400
    assert parse_since("2024-05-01") == time.mktime(time.strptime("2024-05-01", "%Y-%m-%d"))
    with pytest.raises(ValueError, match="neither a span"):
        parse_since("yesterday")


def test_columns_count_wide_characters_twice() -> None:
    assert width("見積書") == 6 and width("abc") == 3
    assert clip("見積書の送付について", 9) == "見積書の…"
    lines = table(["SUBJECT", "N"], [["見積書", "1"], ["abc", "22"]], right=frozenset({1}))
    assert lines == ["SUBJECT   N", "見積書    1", "abc      22"]
    coloured = table(["S"], [["sent"]], states=["sent"], state_column=0, colour=True)
    assert coloured[1] == "\x1b[32msent\x1b[0m"


def test_line_time_estimate() -> None:
    fax = dataclasses.replace(BASE, pages=2, tiff_bytes=36000)  # 18 kB of G4 per page
    # 13 s + 1.2 x 2 pages x 144000 bits / 14400 bit/s = 13 + 24 s
    assert call_seconds(fax, 2, None) == pytest.approx(CALL_SETUP_S + 24)
    assert call_seconds(fax, 2, 9600) == pytest.approx(CALL_SETUP_S + 36)
    assert call_seconds(fax, 0, None) == CALL_SETUP_S  # answered, failed before page 1
    attempts = [
        Attempt(1, 1, 1.0, "unanswered", {"reason": "5"}),
        Attempt(1, 2, 2.0, "answered", {}),
        Attempt(1, 2, 3.0, "failed", {"pages": 1, "bitrate": 9600}),
        Attempt(2, 1, 4.0, "answered", {}),
        Attempt(2, 1, 5.0, "success", {"bitrate": 14400}),
    ]
    calls = answered_calls(fax, attempts)
    assert [(c.outcome, c.pages, c.bitrate) for c in calls] == [
        ("failed", 1, 9600),
        ("success", 2, 14400),  # no FAXPAGES: all of the job's pages
    ]
    assert dial_attempts(attempts) == 3
    sent = dataclasses.replace(fax, state="sent")
    stats = tally([sent], {sent.id: attempts})
    (row,) = stats.senders
    assert (row.faxes, row.sent, row.pages, row.calls, row.answered) == (1, 1, 3, 3, 2)
    assert row.line_seconds == pytest.approx(CALL_SETUP_S + 18 + CALL_SETUP_S + 24)


def test_cancel_claims_only_a_queued_job(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "faxmail.sqlite")
    try:
        limits = RateLimits(None, None)
        for n in (1, 2):
            assert store.admit(job(n), limits, 0) == "admitted"
            store.set_state(f"j{n}", "queued", "spooled")
        store.set_state("j2", "sending", "attempt-answered")
        assert not store.claim_result("j2", "cancelled", "cancelled", only_from=("queued",))
        assert store.get("j2").state == "sending"  # type: ignore[union-attr]
        assert store.claim_result("j1", "cancelled", "cancelled", only_from=("queued",), by="x")
        assert store.get("j1").state == "cancelled"  # type: ignore[union-attr]
        # Exactly one result per job: Asterisk's late report claims nothing more.
        assert not store.claim_result("j1", "sent", "fax-sent")
        assert store.pending_results() == ["j1"]
    finally:
        store.close()


def faxmail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "faxmail"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_unusable_settings_exit_78(tmp_path: Path) -> None:
    nowhere = tmp_path / "settings.yaml"
    nowhere.write_text(f"state_dir: {tmp_path / 'none'}\nasterisk: {{user: null}}\n")
    for command in (["jobs"], ["show", "0123"], ["cancel", "0123"], ["resend", "0123"], ["stats"]):
        ran = faxmail(*command, "--settings", str(nowhere))
        assert ran.returncode == 78, ran
        assert f"there is no job store at {tmp_path / 'none' / 'faxmail.sqlite'}" in ran.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("state_dir: /x\nasterisk:\n  spool: /x\n")
    ran = faxmail("jobs", "--settings", str(bad))
    assert ran.returncode == 78 and "line 3: asterisk.spool" in ran.stderr
    assert not (tmp_path / "none").exists()  # a wrong path creates no empty store


@pytest.mark.skipif(os.geteuid() != 0, reason="root only: becoming asterisk.user")
def test_root_becomes_the_spool_owner(workdir: Path) -> None:
    """Run as root, the commands work as asterisk.user (so that SQLite's -wal/-shm files, call
    files and the notify spool stay Asterisk's): a store only root can reach is refused."""
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    state = workdir / "state"
    store = SqliteStore(state / "faxmail.sqlite")
    store.close()
    state.chmod(0o700)  # root's
    settings = workdir / "settings.yaml"
    settings.write_text(f"state_dir: {state}\nasterisk: {{user: nobody}}\n")
    ran = faxmail("jobs", "--settings", str(settings))
    assert ran.returncode == 78, ran
    assert "cannot open the job store (as nobody, the settings' asterisk.user)" in ran.stderr
    assert "Permission denied" in ran.stderr


def test_help_names_every_command() -> None:
    text = faxmail("--help").stdout
    for command in ("jobs", "show", "cancel", "resend", "stats"):
        assert command in text
    assert "Exit status: 0 done; 1 not found or refused" in faxmail("cancel", "--help").stdout


def test_a_call_placed_out_of_this_hosts_reach_is_named() -> None:
    from faxmail.admin.cancel import placed_elsewhere
    from faxmail.core.queuepolicy import DialLine
    from faxmail.store.model import DispatchRow

    lines = [
        DialLine(name="trunk", channel="PJSIP/{number}@trunk"),
        DialLine(name="remote", channel="PJSIP/{number}@trunk", host="pbx2"),
    ]

    def row(line: str, host: str) -> DispatchRow:
        return DispatchRow("j1", 1, 0.0, None, host, None, None, line)

    assert placed_elsewhere(row("trunk", "mx1"), lines, "mx1") is None
    assert placed_elsewhere(row("gone-from-policy", "mx1"), lines, "mx1") is None
    elsewhere = placed_elsewhere(row("trunk", "mx2"), lines, "mx1")
    assert elsewhere == "its call file is in the spool of host mx2: run `faxmail cancel` there"
    remote = placed_elsewhere(row("remote", "mx1"), lines, "mx1")
    assert remote is not None and "Asterisk host pbx2 over AMI" in remote
