"""What a test reads back after sending through the gateway: call files, job rows, replies."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

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


def waiting_calls(milter: MilterProcess) -> int:
    """Queued jobs whose due call no dispatcher has placed yet."""
    path = Path(milter.settings["state_dir"]) / "faxmail.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=5.0)
    try:
        (count,) = db.execute(
            "SELECT count(*) FROM dispatch d JOIN jobs j ON j.id = d.job_id"
            " WHERE d.host IS NULL AND j.state = 'queued' AND d.not_before <= ?",
            (time.time(),),
        ).fetchone()
        return int(count)
    except sqlite3.OperationalError:
        return 0  # no queue table (yet), or the store is locked by the test: do not wait
    finally:
        db.close()


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
