"""Build the long-lived parts (policy, store, spool, renderer) from the settings, once."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from faxmail.asterisk.dialer import build_dialers, unknown_hosts
from faxmail.asterisk.spool import Spool
from faxmail.core.mailfrom import KEY as FROM_KEY
from faxmail.core.mailfrom import mail_from, sends_mail_without_faxing
from faxmail.core.policy import DEFAULT_POLICY_YAML, Policy
from faxmail.core.policywatch import PolicyHolder
from faxmail.core.settings import Settings
from faxmail.core.yamlfile import ConfigError, ConfigProblem
from faxmail.outbound.decision import Gateway
from faxmail.outbound.dispatch import Dispatcher
from faxmail.outbound.dnslookup import make_txt_lookup
from faxmail.outbound.enqueue import Enqueuer
from faxmail.outbound.preview import PreviewMailer, PreviewRequest
from faxmail.outbound.wake import wake
from faxmail.render.options import RenderOptions
from faxmail.render.renderer import Renderer
from faxmail.store.choose import open_store, sqlite_path
from faxmail.store.interface import JobStore, NotifyStore

log = logging.getLogger("faxmail.runtime")


@dataclass
class Runtime:
    settings: Settings
    policies: PolicyHolder
    store: JobStore
    spool: Spool
    renderer: Renderer
    gateway: Gateway
    dispatcher: Dispatcher | None = None  # the daemon's, when the spool is usable

    def close(self) -> None:
        self.renderer.stop_all()
        self.store.close()


Mode = Literal["daemon", "dry-run", "pipe"]


def check_mail_from(policy: Policy, source: str, fqdn: str, *, strict: bool) -> None:
    """Say at start who result mails come from; with ``strict``, refuse to start (ConfigError
    naming the key) when there is no sender and received faxes would be mailed: they would
    all wait in the notify spool."""
    sender = mail_from(policy, fqdn)
    if sender.problem is None:
        log.info("%s", sender.describe())
        return
    if strict and sends_mail_without_faxing(policy):
        raise ConfigError(source, [ConfigProblem(FROM_KEY, None, sender.problem)])
    log.warning("%s", sender.describe())


def _share_store(state: Path, owner: tuple[int, int]) -> None:
    """Run as root, the daemon gives the job store to Asterisk's user: faxmail-notify, which
    Asterisk runs as that user, writes to it too ("attempt to write a readonly database")."""
    for path in (state, *state.glob("faxmail.sqlite*")):
        os.chown(path, *owner)


def _preview_mailer(
    settings: Settings, policies: PolicyHolder, store: NotifyStore
) -> PreviewMailer:
    """Previews go out through notify's outbox, with the policy as it reads at that moment."""
    from faxmail.notify.environment import Context
    from faxmail.notify.outbox import NotifySpool
    from faxmail.notify.preview import mail_preview

    def mail(request: PreviewRequest) -> None:
        spool = NotifySpool(settings.notify_spool)
        mail_preview(Context(settings, policies.current(), store, spool), request)

    return mail


def build_runtime(settings: Settings, *, mode: Mode = "daemon") -> Runtime:
    """`daemon` owns the spool: it clears stale work files and repairs what a crash left.
    `pipe` (faxmail sendfax, one process per mail, maybe several at once) must not; `dry-run`
    queues nothing."""
    policies = PolicyHolder(settings.policy)  # ConfigError: refuse to start
    if policies.source == "<embedded default>":
        log.warning(
            "no policy file: the embedded default allows nobody to fax:\n%s", DEFAULT_POLICY_YAML
        )
    check_mail_from(policies.current(), policies.source, socket.getfqdn(), strict=mode != "dry-run")
    state = settings.state_dir
    work = state / "work"
    if mode == "daemon":
        shutil.rmtree(work, ignore_errors=True)  # work files of a previous run are garbage
    work.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)  # StoreUnavailable, StoreSchemaOutdated: refuse to start
    spool = Spool.from_settings(settings.asterisk)
    if spool.owner is not None and mode == "daemon" and sqlite_path(settings) is not None:
        _share_store(state, spool.owner)
    enqueuer = Enqueuer(spool, store, put_documents=bool(settings.asterisk_hosts))
    problems = spool.problems()
    for problem in problems:
        log.warning("fax queueing unavailable until fixed (faxes get 451): %s", problem)
    dispatcher = None
    if not problems and mode == "daemon":
        dialers = build_dialers(settings, spool)
        lines = {line.name: line.host for line in policies.current().dial_lines()}
        for problem in unknown_hosts(lines, dialers):
            log.warning("calls on this line are not dialled until fixed: %s", problem)
        dispatcher = Dispatcher(spool, store, policies.current, dialers=dialers)
        dispatcher.repair()  # first: it publishes the staged call files that were claimed
        enqueuer.repair(shared=sqlite_path(settings) is None)
    renderer = Renderer(RenderOptions(), slots=settings.render_slots)
    gateway = Gateway(
        policies=policies,
        store=store,
        lookup=make_txt_lookup(settings.dns),
        enqueuer=enqueuer,
        renderer=renderer,
        work_root=work,
        dry_run=mode == "dry-run",
        on_queued=(lambda: wake(state)) if dispatcher is not None else lambda: None,
        preview_mailer=_preview_mailer(settings, policies, store) if mode == "daemon" else None,
    )
    return Runtime(settings, policies, store, spool, renderer, gateway, dispatcher)
