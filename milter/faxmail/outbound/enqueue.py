"""Hand a rendered fax to Asterisk: job row, TIFF, call file — exactly once.

Order matters for crash safety and for faults: the job row ("queueing") is committed first, then
the TIFF, then the call file is written whole into faxmail-staging/, then the row becomes
"queued", and only then is the call file renamed into outgoing/. So a fault at any step before
that rename (disk full, I/O error, permission lost, the store failing) leaves Asterisk nothing
to dial: the step's leftovers are removed, the row becomes "abandoned" and the sender gets a 4xx.
`repair()` at start-up settles what a crash left: a "queueing" row → abandoned (or queued, if a
call file of the old order is in outgoing/), a staged call file of a "queued" row → renamed
into outgoing/, any other staged file → removed.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import secrets
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from faxmail.asterisk.callfile import CallFile, clean_staging, render_callfile, spool_callfile
from faxmail.core.crashpoints import crash_point
from faxmail.core.durable import fsync_dir
from faxmail.core.policy import Fax
from faxmail.core.replies import LOCAL_ERROR, RATE_LIMITED, SPOOL_FULL, Refusal, Reply
from faxmail.core.settings import Asterisk
from faxmail.store.interface import JobStore
from faxmail.store.model import Duplicate, EventKind, Job, JobState, RateExceeded, RateLimits

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
    store: JobStore,
    limits: RateLimits,
) -> str:
    """Queue `job`; return its id, or the id of the earlier identical job (a resent mail).

    Refusal: RATE_LIMITED; SPOOL_FULL / LOCAL_ERROR for a local fault (disk full, I/O error,
    permission, outgoing/ gone, the store failing) at any step, with nothing left for Asterisk.
    """
    try:
        _settle_unsettled(store)
        admission = store.admit(job, limits, fax.duplicate_window_hours * 3600)
        earlier = store.get(admission.job_id) if isinstance(admission, Duplicate) else None
    except sqlite3.Error as exc:
        log.error("job %s: job store failed before queueing: %s", job.id, exc)
        raise Refusal(_store_reply(exc)) from exc
    if isinstance(admission, Duplicate):
        if earlier is not None and earlier.state == JobState.QUEUEING:
            # Another delivery of this mail is being queued right now: it may yet fail, and a
            # 250 here would then be a 250 without a fax. Later, the duplicate is settled.
            log.warning("job %s: the same mail is being queued as %s", job.id, admission.job_id)
            raise Refusal(LOCAL_ERROR)
        log.info("job %s: duplicate of %s, not faxed again", job.id, admission.job_id)
        return admission.job_id
    if isinstance(admission, RateExceeded):
        raise Refusal(
            RATE_LIMITED.format(sender=job.sender, count=admission.count, window=admission.window)
        )
    crash_point("admitted")
    name = f"{job.id}.call"
    try:
        _place_tiff(rendered_tiff, spool, job.id)
        crash_point("tiff-placed")
        # Written whole into staging/ (staging and "outgoing" the same folder: spool_callfile's
        # rename is a no-op then): Asterisk sees nothing until the row says "queued".
        ready = spool_callfile(
            render_callfile(callfile_for(job, fax)),
            staging_dir=spool.staging,
            outgoing_dir=spool.staging,
            name=name,
            owner=spool.owner,
        )
    except OSError as exc:
        _undo(spool, store, job.id, exc)
        raise Refusal(_spool_reply(exc)) from exc
    crash_point("callfile-staged")
    try:
        store.set_state(
            job.id, JobState.QUEUED, EventKind.SPOOLED, callfile=str(spool.callfile_path(job.id))
        )
    except sqlite3.Error as exc:
        _undo(spool, store, job.id, exc)
        raise Refusal(_store_reply(exc)) from exc
    crash_point("committed")
    try:
        _publish(ready, spool.outgoing / name)
    except OSError as exc:
        _undo(spool, store, job.id, exc)
        raise Refusal(_spool_reply(exc)) from exc
    crash_point("callfile-spooled")
    return job.id


# Jobs whose "abandoned" could not be written (the store was failing): written before the next
# admission, so that a resent mail is not taken for a duplicate of a fax that never left.
_unsettled: dict[str, tuple[JobStore, str]] = {}
_unsettled_lock = threading.Lock()


def _publish(ready: Path, final: Path) -> None:
    """Rename a staged call file into outgoing/: from that instant Asterisk may dial it."""
    if final.exists():
        # rename() would silently replace a call file Asterisk may be working on.
        raise FileExistsError(errno.EEXIST, "call file already queued", str(final))
    os.rename(ready, final)
    try:
        fsync_dir(final.parent)
        fsync_dir(ready.parent)
    except OSError as exc:
        # Too late to take back: Asterisk may have read it already, and the row says queued.
        log.error("call file %s queued, but its folder could not be synced: %s", final, exc)


def _undo(spool: Spool, store: JobStore, job_id: str, exc: Exception) -> None:
    """Take back what this job left (its TIFF, its ready call file) and abandon its row."""
    log.error("job %s: cannot queue: %s", job_id, exc)
    for leftover in (spool.staging / f"{job_id}.call", spool.faxes / f"{job_id}.tif"):
        try:
            leftover.unlink(missing_ok=True)
        except OSError as error:
            log.error("job %s: cannot remove %s: %s", job_id, leftover, error)  # repair() will
    try:
        store.set_state(job_id, JobState.ABANDONED, EventKind.SPOOL_ERROR, error=str(exc))
    except sqlite3.Error as error:
        log.error("job %s: cannot mark it abandoned yet: %s", job_id, error)
        with _unsettled_lock:
            _unsettled[job_id] = (store, str(exc))


def _settle_unsettled(store: JobStore) -> None:
    with _unsettled_lock:
        pending = [(job_id, why) for job_id, (s, why) in _unsettled.items() if s is store]
    for job_id, why in pending:
        store.set_state(job_id, JobState.ABANDONED, EventKind.SPOOL_ERROR, error=why)
        log.warning("job %s: marked abandoned now that the job store works again", job_id)
        with _unsettled_lock:
            _unsettled.pop(job_id, None)


def _spool_reply(exc: OSError) -> Reply:
    return SPOOL_FULL if exc.errno in (errno.ENOSPC, errno.EDQUOT) else LOCAL_ERROR


def _store_reply(exc: sqlite3.Error) -> Reply:
    # SQLITE_FULL: the state folder's disk is full
    return (
        SPOOL_FULL if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL else LOCAL_ERROR
    )


def repair(spool: Spool, store: JobStore) -> None:
    """Settle what a crash left behind (run once at start, before taking mail)."""
    if spool.staging.is_dir():
        for call in sorted(spool.staging.glob("*.call")):
            job = store.get(call.stem)
            if job is None or job.state != JobState.QUEUED:
                continue  # unfinished: clean_staging removes it below
            # committed, then the crash came before the rename: the sender's retry will be
            # answered as a duplicate of this job, so it must go out
            try:
                _publish(call, spool.callfile_path(job.id))
            except OSError as exc:
                log.error("job %s: cannot queue its call file (next start tries): %s", job.id, exc)
                continue
            log.warning("job %s: call file queued after a crash", job.id)
    removed = clean_staging(spool.staging) if spool.staging.is_dir() else 0
    if removed:
        log.warning("removed %d unfinished call files from %s", removed, spool.staging)
    for job in store.in_state(JobState.QUEUEING):
        done = spool.outgoing.parent / "outgoing_done" / f"{job.id}.call"
        if spool.callfile_path(job.id).exists() or done.exists():
            store.set_state(job.id, JobState.QUEUED, EventKind.REPAIRED)
            log.warning("job %s: call file found after a crash; marked queued", job.id)
        else:
            Path(job.tiff).unlink(missing_ok=True)
            store.set_state(job.id, JobState.ABANDONED, EventKind.REPAIRED)
            log.warning("job %s: no call file after a crash; abandoned (sender got no 250)", job.id)
    if spool.faxes.is_dir():
        for leftover in spool.faxes.glob(".*.tif.tmp"):
            leftover.unlink(missing_ok=True)
