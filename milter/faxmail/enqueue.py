"""Hand a rendered fax to Asterisk: job row, TIFF, call file — exactly once.

Order matters for crash safety: the job row ("queueing") is committed first, then the TIFF, then
the call file is renamed into outgoing/, then the row becomes "queued". `repair()` at start-up
settles rows a crash left in "queueing": call file present → queued, absent → abandoned (and the
sender, who got no 250, will retry).
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from .callfile import CallFile, clean_staging, render_callfile, spool_callfile
from .crashpoints import crash_point
from .durable import fsync_dir
from .policy import Fax
from .replies import LOCAL_ERROR, RATE_LIMITED, SPOOL_FULL, Refusal
from .settings import Asterisk
from .store import Duplicate, Job, RateExceeded, RateLimits, Store

log = logging.getLogger("faxmail.enqueue")


def new_job_id() -> str:
    # Random, not a timestamp: two mails in the same second must not collide.
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Spool:
    """Where queued faxes go, and who must own them."""

    outgoing: Path
    staging: Path
    faxes: Path
    owner: tuple[int, int] | None
    missing_user: str | None = None  # the configured owner does not exist

    @classmethod
    def from_settings(cls, asterisk: Asterisk) -> Spool:
        owner, missing = None, None
        if asterisk.user is not None and os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(asterisk.user)
                owner = (entry.pw_uid, entry.pw_gid)
            except KeyError:
                missing = asterisk.user
        return cls(asterisk.outgoing, asterisk.staging, asterisk.faxes, owner, missing)

    def problems(self) -> list[str]:
        """What keeps faxes from being queued (logged at start; such faxes get 451)."""
        found = []
        if self.missing_user is not None:
            # A call file owned by root makes Asterisk redial in a tight loop: never write one.
            found.append(f"user {self.missing_user!r} (asterisk.user) does not exist")
        for folder in (self.outgoing, self.staging, self.faxes):
            if not folder.is_dir():
                found.append(f"{folder} does not exist")
            elif not os.access(folder, os.W_OK | os.X_OK):
                found.append(f"{folder} is not writable")
        return found

    def callfile_path(self, job_id: str) -> Path:
        return self.outgoing / f"{job_id}.call"


def _place_tiff(source: Path, spool: Spool, job_id: str) -> Path:
    final = spool.faxes / f"{job_id}.tif"
    temporary = spool.faxes / f".{job_id}.tif.tmp"
    try:
        shutil.copyfile(source, temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        if spool.owner is not None:
            os.chown(temporary, *spool.owner)
        os.chmod(temporary, 0o640)
        os.replace(temporary, final)
    except OSError:
        # A copy cut short (disk full) would otherwise hold its space until the next restart's
        # repair(), keeping the spool full while the sender retries.
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(spool.faxes)  # the TIFF must be there before the call file that names it
    return final


def callfile_for(job: Job, fax: Fax) -> CallFile:
    # Only our own tokens go in: the job id, the dialled digits and our own path.
    return CallFile(
        channel=fax.channel.format(number=job.number_dialled),
        context=fax.context,
        extension=fax.extension,
        max_retries=fax.max_retries,
        retry_time=fax.retry_time,
        wait_time=fax.wait_time,
        caller_id=f'"" <{fax.caller_id.lstrip("+")}>' if fax.caller_id else None,
        archive=True,
        variables={
            "FAXMAIL_JOB": job.id,
            "FAXFILE": job.tiff,
            "FAXNUMBER": job.number_dialled,
            # from the admin's policy (checked there), for FAXOPT() in the send context
            **({"FAXMAIL_HEADERINFO": fax.header_info} if fax.header_info else {}),
            **({"FAXMAIL_STATIONID": fax.local_station_id} if fax.local_station_id else {}),
        },
    )


def enqueue(
    job: Job,
    rendered_tiff: Path,
    *,
    spool: Spool,
    fax: Fax,
    store: Store,
    limits: RateLimits,
) -> str:
    """Queue `job`; return its id, or the id of the earlier identical job (a resent mail)."""
    admission = store.admit(job, limits, fax.duplicate_window_hours * 3600)
    if isinstance(admission, Duplicate):
        log.info("job %s: duplicate of %s, not faxed again", job.id, admission.job_id)
        return admission.job_id
    if isinstance(admission, RateExceeded):
        raise Refusal(
            RATE_LIMITED.format(sender=job.sender, count=admission.count, window=admission.window)
        )
    crash_point("admitted")
    try:
        _place_tiff(rendered_tiff, spool, job.id)
        crash_point("tiff-placed")
        spool_callfile(
            render_callfile(callfile_for(job, fax)),
            staging_dir=spool.staging,
            outgoing_dir=spool.outgoing,
            name=f"{job.id}.call",
            owner=spool.owner,
        )
    except OSError as exc:
        (spool.faxes / f"{job.id}.tif").unlink(missing_ok=True)
        store.set_state(job.id, "abandoned", "spool-error", error=str(exc))
        log.error("job %s: cannot spool: %s", job.id, exc)
        raise Refusal(
            SPOOL_FULL if exc.errno in (errno.ENOSPC, errno.EDQUOT) else LOCAL_ERROR
        ) from exc
    crash_point("callfile-spooled")
    store.set_state(job.id, "queued", "spooled", callfile=str(spool.callfile_path(job.id)))
    return job.id


def repair(spool: Spool, store: Store) -> None:
    """Settle what a crash left behind (run once at start, before taking mail)."""
    removed = clean_staging(spool.staging) if spool.staging.is_dir() else 0
    if removed:
        log.warning("removed %d unfinished call files from %s", removed, spool.staging)
    for job in store.in_state("queueing"):
        done = spool.outgoing.parent / "outgoing_done" / f"{job.id}.call"
        if spool.callfile_path(job.id).exists() or done.exists():
            store.set_state(job.id, "queued", "repaired")
            log.warning("job %s: call file found after a crash; marked queued", job.id)
        else:
            Path(job.tiff).unlink(missing_ok=True)
            store.set_state(job.id, "abandoned", "repaired")
            log.warning("job %s: no call file after a crash; abandoned (sender got no 250)", job.id)
    if spool.faxes.is_dir():
        for leftover in spool.faxes.glob(".*.tif.tmp"):
            leftover.unlink(missing_ok=True)
