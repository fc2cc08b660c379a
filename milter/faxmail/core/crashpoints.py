"""Named points in queueing and dispatch where a test can kill the daemon (kill -9) or hold it.

The crash-safety tests set FAXMAIL_CRASH_AT=<point> in the daemon's environment to prove that a
crash at that exact point leaves no call file without a job, no job without its call, and no
call placed twice (the milter's queueing, then the dispatcher's stage → claim → publish).
The fault tests set FAXMAIL_PAUSE_AT=<point> and FAXMAIL_PAUSE_FILE=<path>: while <path> exists
(the test creates it to arm the pause), the daemon creates <path>.here at the point and waits
until the test removes <path>. Meanwhile the test breaks the real thing (fills the disk, makes
a folder immutable, locks the database, removes outgoing/), so the daemon's own code meets the
fault at exactly that step. Both unset (always, in production): two dictionary lookups per
point.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

POINTS = (
    "admitted",
    "tiff-placed",
    "committed",
    "dispatch-staged",
    "dispatch-claimed",
    "dispatch-published",
)
PAUSE_LIMIT_S = 120.0  # a test that forgets to release the daemon does not hang it for ever


def crash_point(name: str) -> None:
    if os.environ.get("FAXMAIL_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("FAXMAIL_PAUSE_AT") == name:
        _pause(os.environ.get("FAXMAIL_PAUSE_FILE"))


def _pause(flag: str | None) -> None:
    if not flag:
        return
    path = Path(flag)
    if not path.exists():
        return  # not armed: this fax goes through
    path.with_name(path.name + ".here").touch()
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
