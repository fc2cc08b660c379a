"""Put a rendered fax in faxmail's outbound queue: job row, TIFF, "queued" — exactly once.

Order matters for crash safety and for faults: the job row ("queueing") is committed first, then
the TIFF is put in place, then the row becomes "queued" with its first call waiting in the
queue (one transaction); where remote Asterisk hosts dial, the TIFF is also put in the
store before that, for them to fetch. No call file is written here: the dispatcher
(outbound/dispatch.py) places each call when the line and the number are free, so the 250
never waits for the line.
A fault at any step before "queued" (disk full, I/O error, permission lost, the store failing)
leaves nothing to dial: the TIFF is removed, the row becomes "abandoned" and the sender gets a
4xx. `repair()` at start-up settles what a crash left: a "queueing" row → abandoned (or queued,
if a call file of an older version's order is in outgoing/), a leftover in staging → removed
(after the dispatcher's repair published the claimed ones). Where each file goes:
asterisk/spool.py.
"""

from __future__ import annotations

import errno
import logging
import secrets
import threading
import time
from pathlib import Path

from faxmail.asterisk.spool import PARTIAL_TIFFS, Spool, clean_staging, place_tiff
from faxmail.core.crashpoints import crash_point
from faxmail.core.policy import Fax
from faxmail.core.replies import LOCAL_ERROR, RATE_LIMITED, SPOOL_FULL, Refusal, Reply
from faxmail.store.errors import StoreUnavailable
from faxmail.store.interface import JobStore
from faxmail.store.model import Duplicate, EventKind, Job, JobState, RateExceeded, RateLimits

log = logging.getLogger("faxmail.enqueue")


def new_job_id() -> str:
    # Random, not a timestamp: two mails in the same second must not collide.
    return secrets.token_hex(8)


class Enqueuer:
    """Queues faxes into one spool for one job store; built once, by the runtime.

    It also remembers the jobs whose "abandoned" could not be written (the store was failing),
    to write it before the next admission, so that a resent mail is not taken for a duplicate
    of a fax that never left. That memory is this object's, not the process's: two gateways in
    one process keep their own.
    """

    def __init__(self, spool: Spool, store: JobStore, *, put_documents: bool = False) -> None:
        self.spool = spool
        self.store = store
        # Remote Asterisk hosts (settings asterisk_hosts) fetch the TIFF from the store.
        self.put_documents = put_documents
        self._unsettled: dict[str, str] = {}  # job id → why it was abandoned
        self._unsettled_lock = threading.Lock()

    def enqueue(
        self,
        job: Job,
        rendered_tiff: Path,
        *,
        fax: Fax,
        limits: RateLimits,
        not_before: float | None = None,
    ) -> str:
        """Queue `job` (its first call not before `not_before`: a send-later request); return
        its id, or the id of the earlier identical job (a resent mail).

        Refusal: RATE_LIMITED; SPOOL_FULL / LOCAL_ERROR for a local fault (disk full, I/O
        error, permission, outgoing/ gone, the store failing) at any step, with nothing left
        for Asterisk.
        """
        spool, store = self.spool, self.store
        try:
            self._settle_unsettled()
            admission = store.admit(job, limits, fax.duplicate_window_hours * 3600)
            earlier = store.get(admission.job_id) if isinstance(admission, Duplicate) else None
        except StoreUnavailable as exc:
            log.error("job %s: job store failed before queueing: %s", job.id, exc)
            raise Refusal(store_reply(exc)) from exc
        if isinstance(admission, Duplicate):
            if earlier is not None and earlier.state == JobState.QUEUEING:
                # Another delivery of this mail is being queued right now: it may yet fail, and
                # a 250 here would then be a 250 without a fax. Later, the duplicate is settled.
                log.warning("job %s: the same mail is being queued as %s", job.id, admission.job_id)
                raise Refusal(LOCAL_ERROR)
            log.info("job %s: duplicate of %s, not faxed again", job.id, admission.job_id)
            return admission.job_id
        if isinstance(admission, RateExceeded):
            raise Refusal(
                RATE_LIMITED.format(
                    sender=job.sender, count=admission.count, window=admission.window
                )
            )
        crash_point("admitted")
        try:
            place_tiff(rendered_tiff, spool, job.id)
        except OSError as exc:
            self._undo(job.id, exc)
            raise Refusal(_spool_reply(exc)) from exc
        crash_point("tiff-placed")
        try:
            if self.put_documents:
                self.store.put_document(job.id, spool.tiff(job.id).read_bytes())
        except (OSError, StoreUnavailable) as exc:
            self._undo(job.id, exc)
            raise Refusal(
                store_reply(exc) if isinstance(exc, StoreUnavailable) else _spool_reply(exc)
            ) from exc
        try:
            # In faxmail's queue now: the dispatcher places its call, the 250 does not wait.
            store.queue_job(job.id, job.created if not_before is None else not_before)
        except StoreUnavailable as exc:
            self._undo(job.id, exc)
            raise Refusal(store_reply(exc)) from exc
        crash_point("committed")
        return job.id

    def _undo(self, job_id: str, exc: Exception) -> None:
        """Take back what this job left (its TIFF) and abandon its row."""
        log.error("job %s: cannot queue: %s", job_id, exc)
        for leftover in (self.spool.tiff(job_id),):
            try:
                leftover.unlink(missing_ok=True)
            except OSError as error:
                log.error("job %s: cannot remove %s: %s", job_id, leftover, error)  # repair() will
        try:
            self.store.set_state(job_id, JobState.ABANDONED, EventKind.SPOOL_ERROR, error=str(exc))
        except StoreUnavailable as error:
            log.error("job %s: cannot mark it abandoned yet: %s", job_id, error)
            with self._unsettled_lock:
                self._unsettled[job_id] = str(exc)

    def _settle_unsettled(self) -> None:
        with self._unsettled_lock:
            pending = list(self._unsettled.items())
        for job_id, why in pending:
            self.store.set_state(job_id, JobState.ABANDONED, EventKind.SPOOL_ERROR, error=why)
            log.warning("job %s: marked abandoned now that the job store works again", job_id)
            with self._unsettled_lock:
                self._unsettled.pop(job_id, None)

    def repair(self, *, shared: bool = False) -> None:
        """Settle what a crash left behind (run once at start, before taking mail; after the
        dispatcher's repair, which publishes the staged call files that were promised).

        `shared`: other hosts admit into the same store, so a young "queueing" row may be
        another host's admission in progress: only rows older than STALE_QUEUEING_S are
        settled (faxmail-notify retry settles the younger ones of a crash later)."""
        spool, store = self.spool, self.store
        removed = clean_staging(spool.staging) if spool.staging.is_dir() else 0
        if removed:
            log.warning("removed %d unfinished call files from %s", removed, spool.staging)
        for job in store.in_state(JobState.QUEUEING):
            if shared and not stale_admission(job, time.time()):
                continue
            if spool.queued_callfile(job.id).exists() or spool.archived_callfile(job.id).exists():
                # a call file of an older version's order (call file before the row)
                store.set_state(job.id, JobState.QUEUED, EventKind.REPAIRED)
                log.warning("job %s: call file found after a crash; marked queued", job.id)
            else:
                Path(job.tiff).unlink(missing_ok=True)
                store.set_state(job.id, JobState.ABANDONED, EventKind.REPAIRED)
                log.warning(
                    "job %s: not queued before a crash; abandoned (sender got no 250)", job.id
                )
        if spool.faxes.is_dir():
            for leftover in spool.faxes.glob(PARTIAL_TIFFS):
                leftover.unlink(missing_ok=True)


# A "queueing" row lives milliseconds (admit → TIFF → "queued", after rendering): one this old
# is a crashed host's, whichever host looks.
STALE_QUEUEING_S = 300.0


def stale_admission(job: Job, now: float) -> bool:
    return job.state == JobState.QUEUEING and job.created < now - STALE_QUEUEING_S


def _spool_reply(exc: OSError) -> Reply:
    return SPOOL_FULL if exc.errno in (errno.ENOSPC, errno.EDQUOT) else LOCAL_ERROR


def store_reply(exc: StoreUnavailable) -> Reply:
    # the database's disk is full (SQLite's state folder, or PostgreSQL's)
    return SPOOL_FULL if exc.full else LOCAL_ERROR
