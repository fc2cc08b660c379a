"""Call files an older version left in its holding folder: move them on into outgoing/.

Before faxmail owned its queue, faxmail-notify queued a fax-level retry as a second call file,
held under the staging folder until its future mtime was set, then renamed into outgoing/. A
crash in between left it there. Retries now wait in faxmail's queue (the dispatcher places
them), so nothing new lands in that folder; `faxmail-notify retry` still releases what an older
version left, so that an upgrade loses no call.
"""

from __future__ import annotations

import logging
from pathlib import Path

from faxmail.asterisk.spool import CALLFILES, Spool, publish
from faxmail.notify.environment import Context

log = logging.getLogger("faxmail_notify.requeue")


def _release(held: Path, spool: Spool) -> Path:
    final = spool.outgoing / held.name
    unsynced = publish(held, final)
    if unsynced is not None:
        raise unsynced
    return final


def release_held(ctx: Context) -> int:
    """Move call files a crash left in the holding directory into outgoing/; return how many."""
    spool = Spool.from_settings(ctx.settings.asterisk)
    if not spool.hold.is_dir():
        return 0  # no fax-level retry was ever queued here
    moved = 0
    for held in sorted(spool.hold.glob(CALLFILES)):
        try:
            _release(held, spool)
            moved += 1
        except OSError as exc:
            log.error("cannot queue held call file %s: %s", held, exc)
    return moved
