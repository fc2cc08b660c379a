"""Named points where a test can make the daemon die as if killed (kill -9).

The crash-safety tests set FAXMAIL_CRASH_AT=<point> in the daemon's environment to prove that a
crash at that exact point leaves no call file without a job and no job without a call file.
Unset (always, in production) it costs one dictionary lookup per queued fax.
"""

from __future__ import annotations

import os
import signal

POINTS = ("admitted", "tiff-placed", "callfile-spooled")


def crash_point(name: str) -> None:
    if os.environ.get("FAXMAIL_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
