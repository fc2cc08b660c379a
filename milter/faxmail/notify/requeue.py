"""Fax-level retry: queue another call file for a job whose answered call failed to fax.

Asterisk retries only unanswered calls (MaxRetries); an answered call whose fax failed is done
for it. With the policy's notify.fax_retries > 0 we queue a new call file for the same job —
the milter's own `callfile_for()` and the same staging → rename route (asterisk/spool.py), so
it is checked, fsynced and owned by Asterisk's user like the first — to be dialled
fax.retry_time from now.

The delay is the file's mtime (pbx_spool dials a file with a future mtime at that time). It
must be set before pbx_spool sees the file, so the call file is first spooled into a holding
directory under the staging directory, given its mtime there, and then renamed into
outgoing/. A crash in between leaves it in the holding directory; `faxmail-notify retry`
moves it on.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from faxmail.asterisk.callfile import render_callfile
from faxmail.asterisk.spool import (
    CALLFILES,
    Spool,
    callfile_for,
    callfile_name,
    publish,
    spool_callfile,
)
from faxmail.notify.environment import Context
from faxmail.store.model import Job

log = logging.getLogger("faxmail_notify.requeue")


def _spool(ctx: Context) -> Spool:
    spool = Spool.from_settings(ctx.settings.asterisk)
    spool.hold.mkdir(mode=0o750, exist_ok=True)
    return spool


def requeue(ctx: Context, job: Job, round_: int) -> Path:
    """Queue call number `round_` of `job`; return the call file's path in outgoing/.

    Raises OSError (spool not writable, call file exists) or ValueError (a value the call file
    checks refuse, e.g. after a policy edit).
    """
    spool = _spool(ctx)
    if spool.missing_user is not None:
        raise OSError(f"user {spool.missing_user!r} (asterisk.user) does not exist")
    first = callfile_for(job, ctx.policy.fax)
    # FAXMAIL_ROUND lets notify tell this call's reports from late ones of the call before.
    callfile = replace(first, variables={**first.variables, "FAXMAIL_ROUND": str(round_)})
    held = spool_callfile(
        render_callfile(callfile),
        staging_dir=spool.staging,
        outgoing_dir=spool.hold,
        name=callfile_name(job.id, round_),
        owner=spool.owner,
    )
    when = time.time() + ctx.policy.fax.retry_time
    os.utime(held, (when, when))
    final = _release(held, spool)
    log.info("job %s: fax failed; call %d queued for %s", job.id, round_, time.ctime(when))
    return final


def _release(held: Path, spool: Spool) -> Path:
    final = spool.outgoing / held.name
    unsynced = publish(held, final)
    if unsynced is not None:
        raise unsynced
    return final


def release_held(ctx: Context) -> int:
    """Move call files a crash left in the holding directory into outgoing/; return how many."""
    if not Spool.from_settings(ctx.settings.asterisk).hold.is_dir():
        return 0  # no fax-level retry was ever queued here
    spool = _spool(ctx)
    moved = 0
    for held in sorted(spool.hold.glob(CALLFILES)):
        try:
            _release(held, spool)
            moved += 1
        except OSError as exc:
            log.error("cannot queue held call file %s: %s", held, exc)
    return moved
