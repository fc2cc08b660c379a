"""`faxmail sendfax CONTEXT TRUNK NUMBER < message`: the seed's Postfix pipe(8) interface,
running the milter's own pipeline (policy, DKIM, render, enqueue) on one accepted mail."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from faxmail.asterisk.dialer import build_dialers
from faxmail.core.exitcodes import (
    EX_CONFIG,
    EX_DATAERR,
    EX_NOPERM,
    EX_OK,
    EX_TEMPFAIL,
)
from faxmail.core.policy import Fax
from faxmail.core.policywatch import PolicyHolder
from faxmail.core.replies import Refusal, Reply
from faxmail.core.session import Session
from faxmail.core.settings import load_settings
from faxmail.daemon.runtime import Runtime, build_runtime
from faxmail.outbound.dispatch import Dispatcher
from faxmail.outbound.facts import message_facts
from faxmail.outbound.mimeparse import parse_message
from faxmail.outbound.wake import wake

log = logging.getLogger("faxmail.sendfax")

# sysexits(3) codes that pipe(8) turns into "try again" or a bounce with our text.

_TOKEN = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")


@dataclass(frozen=True)
class Outcome:
    code: int  # exit status for pipe(8)
    message: str  # one line for standard error (it ends up in the bounce)


def exit_code(reply: Reply) -> int:
    if reply.temporary:
        return EX_TEMPFAIL
    return EX_NOPERM if reply.enhanced.startswith("5.7.") else EX_DATAERR


def send_fax(
    raw: bytes,
    *,
    context: str,
    trunk: str,
    number: str,
    sender: str | None,
    settings_path: Path | None,
) -> Outcome:
    if not (_TOKEN.match(context) and _TOKEN.match(trunk)):
        return Outcome(EX_CONFIG, "CONTEXT and TRUNK must be plain names (letters, digits, _.+-)")
    runtime = build_runtime(load_settings(settings_path), mode="pipe")
    try:
        policy = runtime.policies.current()
        if not policy.fax_address.domains:
            return Outcome(EX_CONFIG, "the policy lists no fax_address.domains")
        # The command line chooses the dialplan context and the trunk, as in the seed.
        fax = Fax.model_validate(
            {**policy.fax.model_dump(), "context": context, "channel": f"PJSIP/{{number}}@{trunk}"}
        )
        runtime.gateway.policies = PolicyHolder.fixed(
            policy.model_copy(update={"fax": fax}), runtime.policies.source
        )
        pattern = policy.fax_address
        address = f"{pattern.local_part}{pattern.delimiter}{number}@{pattern.domains[0]}"
        # pipe(8) gives no SMTP session: no SASL login, no client address. The envelope
        # sender (${sender}) is optional; without it the From: address stands in.
        author = message_facts(parse_message(raw)).from_address
        session = Session(envelope_sender=sender or author)
        try:
            recipient = runtime.gateway.check_recipient(session, address)
            if recipient is None:
                return Outcome(EX_DATAERR, f"{address} is not a fax address of this policy")
            queued = runtime.gateway.decide(session, [recipient], io.BytesIO(raw))
        except Refusal as refusal:
            log.info(
                "sendfax refused %s from %s: %s", number, session.envelope_sender, refusal.reply
            )
            return Outcome(exit_code(refusal.reply), str(refusal.reply))
        job = next(iter(queued.jobs.values()))
        log.info("sendfax queued job=%s from=%s number=%s", job, queued.identity.author, number)
        _dial_now(runtime, job)
        return Outcome(EX_OK, f"fax queued as job {job} ({queued.pages} pages)")
    finally:
        runtime.close()


def _dial_now(runtime: Runtime, job_id: str) -> None:
    """Place this job's first call now, with the context and trunk of the command line, when
    the line and the number are free; else the daemon's dispatcher places it (woken here)."""
    if runtime.spool.problems():
        return
    Dispatcher(
        runtime.spool,
        runtime.store,
        runtime.gateway.policies.current,
        dialers=build_dialers(runtime.settings, runtime.spool),
    ).tick(only=job_id)
    wake(runtime.settings.state_dir)
