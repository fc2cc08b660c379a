"""A preview: the rendered pages mailed back to the sender instead of dialled.

The mail itself is notify's (its outbox spools and delivers every mail faxmail sends), but
notify is a higher layer than outbound: the decision hands a `PreviewRequest` to the
`PreviewMailer` the daemon gives it (daemon/runtime.py wires notify/preview.py in).

Each previewed number is a job row in state "previewed", admitted like a fax (the same rate-limit
count, in the same transaction) before the mail is spooled: a sender cannot preview past the
limits. The row is never queued nor dialled, gets no result mail and is no duplicate of a fax.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from faxmail.core.replies import RATE_LIMITED, Refusal
from faxmail.outbound.enqueue import store_reply
from faxmail.store.errors import StoreUnavailable
from faxmail.store.interface import JobStore
from faxmail.store.model import EventKind, Job, JobState, RateExceeded, RateLimits

log = logging.getLogger("faxmail.preview")


@dataclass(frozen=True)
class PreviewRequest:
    to: str  # the authenticated author: never Reply-To, never a mail-supplied address
    numbers: tuple[str, ...]  # as the sender wrote them
    subject: str
    pages: int
    tiff: Path  # the rendered fax; exists only while the mailer runs
    language: str


# Spools the preview mail before returning (OSError: nothing spooled, the mail gets a 4xx).
PreviewMailer = Callable[[PreviewRequest], None]


def preview_job(job: Job) -> Job:
    """The row of a preview: no TIFF is kept (the mail carries the pages), nothing to dial."""
    return replace(job, state=JobState.PREVIEWED, tiff="")


def admit_previews(store: JobStore, jobs: Sequence[Job], limits: RateLimits) -> list[str]:
    """Admit each preview row against `limits`; their ids. Refusal (RATE_LIMITED, or 4xx when
    the store fails) takes back the rows admitted so far: no mail, nothing counted."""
    admitted: list[str] = []
    try:
        for job in jobs:
            admission = store.admit(job, limits, 0.0)
            if isinstance(admission, RateExceeded):
                log.info(
                    "preview for %s refused: %d this %s",
                    job.sender,
                    admission.count,
                    admission.window,
                )
                abandon_previews(store, admitted, "rate limit")
                raise Refusal(
                    RATE_LIMITED.format(
                        sender=job.sender, count=admission.count, window=admission.window
                    )
                )
            admitted.append(job.id)
    except StoreUnavailable as exc:
        log.error("preview for %s: job store failed: %s", jobs[0].sender if jobs else "?", exc)
        abandon_previews(store, admitted, str(exc))
        raise Refusal(store_reply(exc)) from exc
    return admitted


def abandon_previews(store: JobStore, job_ids: Sequence[str], why: str) -> None:
    """The preview mail was not sent: its rows stop counting (best effort; the sender got a
    4xx or 450 and nothing was mailed)."""
    for job_id in job_ids:
        try:
            store.set_state(job_id, JobState.ABANDONED, EventKind.SPOOL_ERROR, error=why)
        except StoreUnavailable as exc:
            log.error("preview job %s: cannot mark it abandoned: %s", job_id, exc)
