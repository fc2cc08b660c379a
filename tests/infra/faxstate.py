"""What a test reads back after sending through the gateway: call files, job rows, replies."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import yaml

from faxmail.outbound.wake import wake
from faxmail.store.model import EventKind, JobState
from faxmail.store.sqlite import SqliteStore
from infra.milterproc import MilterProcess
from infra.postfix import SendResult


def spool_dir(milter: MilterProcess) -> Path:
    """The Asterisk spool the test milter writes to (outgoing/, faxmail-staging/, fax/)."""
    return Path(milter.settings["asterisk"]["spool_dir"])


def callfiles(milter: MilterProcess, timeout: float = 20.0) -> list[Path]:
    """The call files in outgoing/, once the milter's dispatcher placed every call that is due
    (it does so just after the 250, not before it); after `timeout`, as they are."""
    deadline = time.monotonic() + timeout
    while waiting_calls(milter) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted((spool_dir(milter) / "outgoing").glob("*.call"))


def _queue(milter: MilterProcess, sql: str, *args: object) -> list[tuple[object, ...]]:
    path = Path(milter.settings["state_dir"]) / "faxmail.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=5.0)
    try:
        rows: list[tuple[object, ...]] = db.execute(sql, args).fetchall()
        return rows
    except sqlite3.OperationalError:
        return []  # no queue table (yet), or the store is locked by the test
    finally:
        db.close()


def channels(milter: MilterProcess) -> int:
    """The channels of the test policy's lines (one line of one channel without `lines:`)."""
    policy = milter.settings.get("policy")
    data = yaml.safe_load(Path(policy).read_text()) if policy and Path(policy).exists() else None
    lines = data.get("lines") if isinstance(data, dict) else None
    if not lines:
        return 1
    return sum(int(line.get("channels", 1)) for line in lines)


def waiting_calls(milter: MilterProcess) -> int:
    """Due calls the dispatcher could place now but has not yet: queued jobs waiting in
    faxmail's queue whose number has no call in flight, while the lines have a free channel
    (without Asterisk a placed call never ends by itself: it holds its number and channel)."""
    rows = _queue(
        milter,
        "SELECT d.host IS NULL, d.not_before <= ?, j.number_e164 FROM dispatch d"
        " JOIN jobs j ON j.id = d.job_id WHERE j.state IN ('queued', 'sending')",
        time.time(),
    )
    in_flight = {number for waiting, _, number in rows if not waiting}
    if len([row for row in rows if not row[0]]) >= channels(milter):
        return 0
    return sum(1 for waiting, due, number in rows if waiting and due and number not in in_flight)


def owed_calls(milter: MilterProcess) -> list[str]:
    """The job ids owed a call, sorted: one per call file in outgoing/ (placed), one per
    queued job waiting in faxmail's queue, and one per job the dispatcher has claimed but not
    yet renamed into outgoing/ (read between its claim and its rename). A job placed twice,
    or placed and waiting, is listed twice; so every queued job is listed exactly once in a
    consistent spool."""
    placed = [path.name.split(".")[0].split("-")[0] for path in callfiles(milter)]
    rows = _queue(
        milter,
        "SELECT d.job_id, d.host IS NULL FROM dispatch d JOIN jobs j ON j.id = d.job_id"
        " WHERE j.state = 'queued'",
    )
    waiting = [str(job_id) for job_id, unclaimed in rows if unclaimed]
    placing = [str(job_id) for job_id, unclaimed in rows if not unclaimed]
    return sorted([*placed, *waiting, *(job for job in placing if job not in placed)])


def job_rows(milter: MilterProcess, columns: str = "id, state") -> list[tuple[object, ...]]:
    """Rows of the milter's job store, oldest first (`columns` is test-chosen SQL)."""
    db = sqlite3.connect(Path(milter.settings["state_dir"]) / "faxmail.sqlite")
    try:
        rows: list[tuple[object, ...]] = db.execute(
            f"SELECT {columns} FROM jobs ORDER BY created"
        ).fetchall()
        return rows
    finally:
        db.close()


def final_reply(result: SendResult) -> str:
    """The answer after DATA as "code text" (the test fails if DATA was never sent)."""
    assert result.data is not None, result
    return f"{result.data.code} {result.data.text}"


def finish_calls(milter: MilterProcess) -> int:
    """End every placed call as sent, as Asterisk and notify would once each fax went
    through (there is no Asterisk here): the job sent, its result claimed, so that its number
    and its channel are free for the next job. The call files stay where they are. Returns how
    many calls it ended."""
    state = Path(milter.settings["state_dir"])
    if not (state / "faxmail.sqlite").exists():
        return 0
    store = SqliteStore(state / "faxmail.sqlite")
    try:
        placed = store.dispatch_rows(claimed=True)
        for row in placed:
            store.claim_result(row.job_id, JobState.SENT, EventKind.FAX_SENT, pages=1)
    finally:
        store.close()
    wake(state)
    return len(placed)
