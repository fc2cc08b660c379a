"""What a test reads back after sending through the gateway: call files, job rows, replies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from infra.milterproc import MilterProcess
from infra.postfix import SendResult


def spool_dir(milter: MilterProcess) -> Path:
    """The Asterisk spool the test milter writes to (outgoing/, faxmail-staging/, fax/)."""
    return Path(milter.settings["asterisk"]["spool_dir"])


def callfiles(milter: MilterProcess) -> list[Path]:
    return sorted((spool_dir(milter) / "outgoing").glob("*.call"))


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
