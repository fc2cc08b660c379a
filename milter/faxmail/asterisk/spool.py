"""Asterisk's spool as faxmail uses it: the folders, the name of every file faxmail puts there,
and the writes that hand a file to Asterisk.

pbx_spool dials every file that appears in outgoing/ and reads a file each time it is closed,
so nothing is ever written there in place:

- a call file is written whole in faxmail-staging/ (on the same filesystem as outgoing/),
  fsynced, given to Asterisk's user, and then renamed into outgoing/; that rename is the
  moment Asterisk may dial it, and it never replaces a call file already queued;
- it belongs to the asterisk user: Asterisk cannot set the times of a root-owned file and then
  ignores MaxRetries/RetryTime, redialling in a tight loop;
- the fax it names (fax/<job>.tif) is in place, fsynced, before the call file is.

faxmail's own folders live under faxmail-staging/: the holding folder of faxmail-notify's
fax-level retries and the parking folder of `faxmail cancel`, so that their renames into and
out of outgoing/ stay on one filesystem.
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from faxmail.asterisk.callfile import CallFile, fallback_vars
from faxmail.core.durable import fsync_dir, write_synced
from faxmail.core.policy import Fax
from faxmail.core.queuepolicy import Fallback
from faxmail.core.settings import Asterisk
from faxmail.store.model import Job

OUTGOING = "outgoing"  # pbx_spool's queue
DONE = "outgoing_done"  # where pbx_spool archives a call file it is done with (Archive: yes)
STAGING = "faxmail-staging"  # same filesystem as outgoing/, so the final rename is atomic
FAXES = "fax"  # the TIFFs of queued faxes, unless the settings name another folder
HOLD = "faxmail-notify-hold"  # under staging: fax-level retries wait here for their mtime
PARKING = "faxmail-cancelled"  # under staging: call files `faxmail cancel` took back

CALLFILES = "*.call"  # every call file name below matches this
PARTIAL_TIFFS = ".*.tif.tmp"  # every partial_tiff_name() matches this

_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def callfile_name(job_id: str, round_: int = 1) -> str:
    """A job's first call is round 1; each later call (a retry) says its round."""
    return f"{job_id}.call" if round_ == 1 else f"{job_id}-r{round_}.call"


_CALLFILE_NAME = re.compile(r"([0-9a-f]{1,64})(?:-r([0-9]{1,4}))?\.call")


def callfile_round(name: str) -> tuple[str, int] | None:
    """(job id, round) of a call file named by callfile_name(); None for any other name."""
    match = _CALLFILE_NAME.fullmatch(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2) or 1)


def tiff_name(job_id: str) -> str:
    return f"{job_id}.tif"


def partial_tiff_name(job_id: str) -> str:
    """A TIFF being copied in: hidden, and never the name a call file gives."""
    return f".{job_id}.tif.tmp"


@dataclass(frozen=True)
class Spool:
    """Where queued faxes go, and who must own them."""

    outgoing: Path
    staging: Path
    faxes: Path
    done: Path
    owner: tuple[int, int] | None = None
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
        root = asterisk.spool_dir
        return cls(
            outgoing=root / OUTGOING,
            staging=root / STAGING,
            faxes=asterisk.fax_dir or root / FAXES,
            done=root / DONE,
            owner=owner,
            missing_user=missing,
        )

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

    @property
    def hold(self) -> Path:
        return self.staging / HOLD

    @property
    def parking(self) -> Path:
        return self.staging / PARKING

    def queued_callfile(self, job_id: str, round_: int = 1) -> Path:
        """Where the call file of this round is while Asterisk has it to dial."""
        return self.outgoing / callfile_name(job_id, round_)

    def staged_callfile(self, job_id: str, round_: int = 1) -> Path:
        return self.staging / callfile_name(job_id, round_)

    def archived_callfile(self, job_id: str, round_: int = 1) -> Path:
        return self.done / callfile_name(job_id, round_)

    def tiff(self, job_id: str) -> Path:
        return self.faxes / tiff_name(job_id)

    def partial_tiff(self, job_id: str) -> Path:
        return self.faxes / partial_tiff_name(job_id)


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


def attempt_callfile(
    job: Job, fax: Fax, *, channel: str, round_: int, fallback: Fallback | None
) -> CallFile:
    """The call file of one attempt placed by faxmail's dispatcher: Asterisk dials once
    (MaxRetries 0; faxmail decides any next call), on `channel` (the line's dial string),
    with the round's number and the policy's fallback for FAXOPT() in the send context."""
    first = callfile_for(job, fax)
    return replace(
        first,
        channel=channel.format(number=job.number_dialled),
        max_retries=0,
        variables={**first.variables, "FAXMAIL_ROUND": str(round_), **fallback_vars(fallback)},
    )


def place_tiff(source: Path, spool: Spool, job_id: str) -> Path:
    """Copy a rendered fax to its place in the spool, whole and synced, owned by Asterisk."""
    final = spool.tiff(job_id)
    temporary = spool.partial_tiff(job_id)
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
        # repair, keeping the spool full while the sender retries.
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(spool.faxes)  # the TIFF must be there before the call file that names it
    return final


def spool_callfile(
    content: bytes,
    *,
    staging_dir: Path,
    outgoing_dir: Path,
    name: str,
    owner: tuple[int, int] | None,
) -> Path:
    """Write `content` as `outgoing_dir/name` atomically; return that path.

    Written whole under `staging_dir`, fsynced, given to `owner` (uid, gid) with mode 0640,
    then renamed into `outgoing_dir` and both directories fsynced. Raises ValueError for a bad
    name, OSError otherwise (EXDEV when the two directories are on different filesystems,
    EEXIST when the call file already exists); the staging file never outlives an error.
    """
    if not _FILE_NAME.fullmatch(name):
        raise ValueError(f"call file name not allowed: {name!r:.80}")
    if os.stat(staging_dir).st_dev != os.stat(outgoing_dir).st_dev:
        # rename() would fail (or a copy would be seen half-written by pbx_spool).
        raise OSError(
            errno.EXDEV,
            f"call file staging dir {staging_dir} and outgoing dir {outgoing_dir} "
            "are on different filesystems; they must share one for an atomic rename",
        )
    staged = staging_dir / name
    final = outgoing_dir / name
    if final.exists():
        # rename() would silently replace a call file Asterisk may be working on.
        raise FileExistsError(errno.EEXIST, "call file already queued", str(final))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(staged, flags, 0o600)
    try:
        try:
            write_synced(descriptor, content)
            if owner is not None:
                os.fchown(descriptor, *owner)
            # After chown (which may clear mode bits); Asterisk appends StartRetry: lines as owner.
            os.fchmod(descriptor, 0o640)
        finally:
            os.close(descriptor)
        os.rename(staged, final)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    fsync_dir(outgoing_dir)
    fsync_dir(staging_dir)
    return final


def publish(ready: Path, final: Path) -> OSError | None:
    """Rename a whole call file into outgoing/: from that instant Asterisk may dial it.

    Raises OSError when it was not renamed (FileExistsError when a call file of that name is
    queued: rename() would silently replace one Asterisk may be working on). Returns the error
    that kept the folders from being synced, if any: too late to take the file back then, as
    Asterisk may have read it already.
    """
    if final.exists():
        raise FileExistsError(errno.EEXIST, "call file already queued", str(final))
    os.rename(ready, final)
    try:
        fsync_dir(final.parent)
        fsync_dir(ready.parent)
    except OSError as exc:
        return exc
    return None


def clean_staging(staging_dir: Path) -> int:
    """Remove what a crash left in `staging_dir` (run at daemon start); return how many.

    A staged file was never renamed, so its job never reached Asterisk: nothing to keep.
    Sub-directories are left alone: faxmail's own folders (holding, parking) are kept.
    """
    removed = 0
    with os.scandir(staging_dir) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed += 1
    return removed
