"""`faxmail-notify fetch`: write a queued fax's TIFF from the job store to this host's fax dir.

A remote Asterisk (the settings' asterisk_hosts on the milter's host) shares no files with the
milter: its dialplan runs this before SendFAX, with the job id and the FAXFILE the call named.
The path must be exactly `<fax dir>/<job>.tif` of this host's settings (asterisk.fax_dir, or
<spool_dir>/fax): a call that named another path is refused, whatever it names. The file is
written whole under a hidden name and renamed, so SendFAX never reads half a TIFF.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from faxmail.asterisk.spool import Spool
from faxmail.core.durable import write_synced
from faxmail.notify.environment import Context
from faxmail.notify.sent import UnknownJob

log = logging.getLogger("faxmail_notify.fetch")


class OutsideFaxDir(Exception):
    """The path is not this job's TIFF in the fax dir (exit 65, EX_DATAERR)."""


def fetch_target(spool: Spool, job_id: str, given: Path) -> Path:
    """The path to write, or OutsideFaxDir: `given` must be the job's own TIFF path."""
    expected = spool.tiff(job_id)
    if os.path.normpath(given) != os.path.normpath(expected):
        raise OutsideFaxDir(f"job {job_id}: {str(given)!r:.120} is not {expected}")
    return expected


def on_fetch(ctx: Context, job_id: str, given: Path) -> Path:
    """Write the job's TIFF where the call expects it; the path written."""
    spool = Spool.from_settings(ctx.settings.asterisk)
    target = fetch_target(spool, job_id, given)
    tiff = ctx.store.document(job_id)
    if tiff is None:
        raise UnknownJob(f"job {job_id}: no fax in the job store to fetch")
    partial = spool.partial_tiff(job_id)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(partial, flags, 0o640)
    try:
        try:
            write_synced(descriptor, tiff)
        finally:
            os.close(descriptor)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    log.info("job %s: fetched its fax from the store to %s (%d bytes)", job_id, target, len(tiff))
    return target


def remove_fetched(ctx: Context, job_id: str, given: Path) -> Path:
    """The call is over (the dialplan's h extension): remove this host's copy. The store
    keeps the fax until the job has its result, for a next call."""
    target = fetch_target(Spool.from_settings(ctx.settings.asterisk), job_id, given)
    target.unlink(missing_ok=True)
    return target
