"""The outbound pipeline: parse → authenticate → authorize → extract → render → enqueue.

Each step is a function over typed values that raises `Refusal(reply)` to stop. The milter, the
`faxmail dry-run` command and the seed-compatible `faxmail sendfax` all call `Gateway`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from faxmail.core.documents import Document
from faxmail.core.policy import Fax, Policy
from faxmail.core.policywatch import PolicyHolder
from faxmail.core.replies import (
    FROM_MISSING,
    FROM_NOT_SINGLE,
    LOCAL_ERROR,
    MESSAGE_TOO_BIG,
    QUEUE_UNAVAILABLE,
    RENDERER_BUSY,
    SENDER_UNKNOWN,
    Refusal,
)
from faxmail.core.session import Session
from faxmail.outbound.authenticate import Identity, identify_sender
from faxmail.outbound.authorize import check_destination, check_rate, max_pages, rate_limits
from faxmail.outbound.content import documents_required, front_matter
from faxmail.outbound.dnslookup import TxtLookup
from faxmail.outbound.enqueue import Enqueuer, new_job_id
from faxmail.outbound.extract import extract_documents
from faxmail.outbound.facts import MessageFacts, message_facts
from faxmail.outbound.mimeparse import parse_message_file
from faxmail.outbound.preview import (
    PreviewMailer,
    PreviewRequest,
    abandon_previews,
    admit_previews,
    preview_job,
)
from faxmail.outbound.recipient import FaxRecipient, parse_recipient
from faxmail.outbound.replayguard import check_not_faxed, faxed_once
from faxmail.outbound.senders import could_match_at_rcpt
from faxmail.queue.sendlater import SendLaterRefused, send_later
from faxmail.render.options import RenderOptions
from faxmail.render.renderer import RenderedFax, Renderer
from faxmail.store.interface import JobStore
from faxmail.store.model import Job, JobState

log = logging.getLogger("faxmail.decision")


@dataclass(frozen=True)
class Queued:
    """The answer for an accepted fax mail."""

    identity: Identity
    jobs: dict[str, str]  # fax address → job id (an earlier job's id for a resent duplicate)
    pages: int
    facts: MessageFacts
    fax: Fax  # the policy's fax settings this decision used (what to do with the mail now)
    previews: tuple[str, ...] = ()  # preview addresses whose pages were mailed back
    added: tuple[str, ...] = ()  # what faxmail drew in front of the attachments: cover, text
    added_pages: int = 0  # of `pages`


BIG_MESSAGE_BYTES = 4 * 1024 * 1024
BIG_MESSAGE_WAIT_S = 120.0


@dataclass
class Gateway:
    policies: PolicyHolder
    store: JobStore
    lookup: TxtLookup
    enqueuer: Enqueuer  # its spool and store: those of this gateway
    renderer: Renderer
    work_root: Path
    dry_run: bool = False  # decide only: render to check, queue nothing
    # Told once a mail's jobs are queued: the daemon pokes its dispatcher, so the first call is
    # placed just after the 250 instead of at the dispatcher's next tick.
    on_queued: Callable[[], object] = lambda: None
    # Mails a preview's pages back (notify's outbox, wired in by the daemon); None: no previews
    preview_mailer: PreviewMailer | None = None
    # A mail being decided is parsed into memory (its documents' encoded text): big ones take
    # turns, so memory stays bounded however many arrive at once.
    _big_messages: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))

    @property
    def policy(self) -> Policy:
        return self.policies.current()

    # --- RCPT TO: cheap checks for one recipient -----------------------------------------
    def check_recipient(self, session: Session, address: str) -> FaxRecipient | None:
        """None for ordinary mail; the fax recipient if allowed so far; Refusal otherwise."""
        policy = self.policy
        recipient = parse_recipient(
            address, policy.fax_address, policy.destinations.region, previews=policy.fax.preview
        )
        if recipient is None:
            return None
        check_destination(recipient.number, policy)
        if policy.authentication.rcpt_sender_check and not could_match_at_rcpt(policy, session):
            raise Refusal(SENDER_UNKNOWN.format(sender=session.envelope_sender or "<>"))
        if session.envelope_sender:
            check_rate(self.store, session.envelope_sender, rate_limits(policy, None), time.time())
        return recipient

    @contextmanager
    def memory_slot(self, size: int) -> Iterator[None]:
        """Hold this around reading a mail of `size` bytes into memory and deciding it."""
        if size < BIG_MESSAGE_BYTES:
            yield
            return
        if not self._big_messages.acquire(timeout=BIG_MESSAGE_WAIT_S):
            raise Refusal(RENDERER_BUSY)
        try:
            yield
        finally:
            self._big_messages.release()

    # --- end of message: the whole decision ----------------------------------------------
    def decide(
        self, session: Session, recipients: Sequence[FaxRecipient], mail: IO[bytes]
    ) -> Queued:
        """Decide on the whole mail in `mail`, a seekable binary file (never read whole)."""
        policy = self.policy
        if mail.seek(0, os.SEEK_END) > policy.limits.max_message_bytes:
            raise Refusal(MESSAGE_TOO_BIG.format(limit=policy.limits.max_message_bytes))
        # parse
        message = parse_message_file(mail)
        facts = message_facts(message)
        if facts.from_count != 1:
            raise Refusal(FROM_NOT_SINGLE.format(count=facts.from_count))
        if not facts.from_address or "@" not in facts.from_address:
            raise Refusal(FROM_MISSING)
        # authenticate
        identity = identify_sender(
            facts.from_address,
            session,
            policy,
            message=mail,
            fax_addresses=[r.address for r in recipients],
            lookup=self.lookup,
        )
        # authorize
        limits = rate_limits(policy, identity.entry)
        for recipient in recipients:
            check_destination(recipient.number, policy, identity.entry)
        # A cheap read before the costly render; admit() counts again inside its transaction.
        check_rate(self.store, identity.author, limits, time.time())
        not_before = requested_time(facts.subject, policy)  # "[at 18:30]" in the Subject
        problems = [] if self.dry_run else self.enqueuer.spool.problems()
        if problems:
            log.error("cannot queue faxes: %s", "; ".join(problems))
            raise Refusal(QUEUE_UNAVAILABLE)
        workdir = Path(tempfile.mkdtemp(prefix="job-", dir=self.work_root))
        try:
            # extract (attachments, the mail's text, a cover sheet), render
            documents = extract_documents(message, workdir, required=documents_required(policy.fax))
            language = identity.entry.language or policy.language
            front = front_matter(
                policy.fax,
                message,
                documents,
                facts=facts,
                author=identity.author,
                entry=identity.entry,
                language=language,
                recipients=recipients,
                now=datetime.now().astimezone(),
            )
            rendered = self._renderer(policy, max_pages(policy, identity.entry)).render(
                documents, workdir, front
            )
            added = tuple(name for name, on in (("cover", front.cover), ("text", front.body)) if on)
            previews = tuple(r.address for r in recipients if r.preview)
            faxes = [r for r in recipients if not r.preview]
            # Signed without To:/Cc: (unsigned_recipients): one SMTP transaction may fax it.
            single_use = identity.dkim.single_use_message_id if identity.dkim else None
            if self.dry_run:
                check_not_faxed(self.store, single_use)
                dry = {r.address: "(dry run)" for r in faxes}
                return Queued(
                    identity,
                    dry,
                    rendered.pages,
                    facts,
                    policy.fax,
                    previews,
                    added,
                    rendered.front_pages,
                )
            digest = _digest(documents) if documents else _text_digest(front.body, front.cover_text)
            if previews:
                # each previewed number counts against the rate limits like a fax
                previewed = [
                    preview_job(self._job(session, identity, facts, r, rendered, digest, policy))
                    for r in recipients
                    if r.preview
                ]
                admitted = admit_previews(self.store, previewed, limits)
                try:
                    self._mail_preview(identity.author, recipients, facts, rendered, language)
                except Refusal as refusal:
                    abandon_previews(self.store, admitted, str(refusal.reply))
                    raise
            # enqueue: one job per fax recipient
            with faxed_once(self.store, single_use if faxes else None):
                jobs = {
                    r.address: self.enqueuer.enqueue(
                        self._job(session, identity, facts, r, rendered, digest, policy),
                        rendered.tiff,
                        fax=policy.fax,
                        limits=limits,
                        not_before=not_before,
                    )
                    for r in faxes
                }
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if jobs:
            self.on_queued()
        return Queued(
            identity, jobs, rendered.pages, facts, policy.fax, previews, added, rendered.front_pages
        )

    def _mail_preview(
        self,
        author: str,
        recipients: Sequence[FaxRecipient],
        facts: MessageFacts,
        rendered: RenderedFax,
        language: str,
    ) -> None:
        """Spool the preview mail (before the 250: a fault here answers 4xx, nothing sent)."""
        if self.preview_mailer is None:
            log.error("a preview was asked for, but this process cannot send mail")
            raise Refusal(QUEUE_UNAVAILABLE)
        numbers = tuple(r.number.given for r in recipients if r.preview)
        request = PreviewRequest(
            author, numbers, facts.subject, rendered.pages, rendered.tiff, language
        )
        try:
            self.preview_mailer(request)
        except OSError as exc:
            log.error("preview for %s could not be spooled: %s", author, exc)
            raise Refusal(LOCAL_ERROR) from exc

    def _renderer(self, policy: Policy, pages: int) -> Renderer:
        """The renderer for these options; all share the daemon's concurrency slots."""
        fax = policy.fax
        options = RenderOptions(
            paper=fax.paper,
            resolution=fax.resolution,
            whiten_threshold=fax.whiten_threshold,
            blacken_threshold=fax.blacken_threshold,
            adaptive=fax.greys == "adaptive",
            photo=fax.photo,
            max_pages=pages,
            timeout_base_s=fax.render_timeout_s,
            timeout_per_page_s=fax.render_timeout_per_page_s,
            office_timeout_s=fax.office_timeout_s,
        )
        return self.renderer.with_options(options)

    def _job(
        self,
        session: Session,
        identity: Identity,
        facts: MessageFacts,
        recipient: FaxRecipient,
        rendered: RenderedFax,
        digest: str,
        policy: Policy,
    ) -> Job:
        job_id = new_job_id()
        # A signer that leaves To:/Cc: unsigned may leave Reply-To: unsigned too (Microsoft 365
        # does): the result mail goes to the From: address, so a sender learns of a replay.
        single_use = identity.dkim.single_use_message_id if identity.dkim else None
        return Job(
            id=job_id,
            created=time.time(),
            state=JobState.QUEUEING,
            sender=identity.author.lower(),
            envelope_sender=session.envelope_sender,
            author=identity.author,
            reply_to=facts.reply_to if single_use is None else None,
            subject=facts.subject,
            number_given=recipient.number.given,
            number_e164=recipient.number.e164,
            number_dialled=recipient.number.dialled,
            pages=rendered.pages,
            digest=digest,
            message_id=facts.message_id or "",
            proof=identity.proof,
            dkim_domain=identity.dkim.domain if identity.dkim else None,
            language=identity.entry.language or policy.language,
            tiff=str(self.enqueuer.spool.tiff(job_id)),
            render_seconds=rendered.seconds,
            tiff_bytes=rendered.size,
        )


def requested_time(subject: str, policy: Policy) -> float | None:
    """The send-later time the Subject asks for (queue/sendlater.py), None for "now"; a
    request that cannot be honoured is refused rather than faxed at once."""
    asked = send_later(subject, policy.send_later, datetime.now().astimezone())
    if isinstance(asked, SendLaterRefused):
        raise Refusal(asked.reply)
    return None if asked is None else asked.timestamp()


def _text_digest(*texts: str) -> str:
    """Of a fax that is only the mail's text: the same text to the same number is a duplicate."""
    return hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()


def _digest(documents: Sequence[Document]) -> str:
    """Of the documents as sent (the TIFF carries a time stamp, so it would differ per run)."""
    digest = hashlib.sha256()
    for document in documents:
        with open(document.path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()
