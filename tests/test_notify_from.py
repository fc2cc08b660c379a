"""Who our mails come from, on a host whose FQDN is `localhost` (as a fresh machine or a
container often is): the default falls back to the fax domain, its absence is said at start by
the key's name, and a mail spooled before the admin set notify.from_address goes out with the
sender (envelope and From:) the policy names at hand-over time."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from faxmail.admin.doctorchecks import Install, check_notify
from faxmail.admin.main import main
from faxmail.core.mailfrom import is_mail_domain, mail_from
from faxmail.core.policy import Policy
from faxmail.core.settings import load_settings
from faxmail.core.yamlfile import ConfigError, load_yaml
from faxmail.daemon.runtime import check_mail_from
from faxmail.notify import deliver as deliver_module
from faxmail.notify.deliver import deliver, deliver_all
from faxmail.notify.environment import Context, load_context
from faxmail.notify.outbox import NotifySpool
from faxmail.notify.results import spool_result
from faxmail.notify.transport import Handover, HandoverFailed
from faxmail.store.model import EventKind, JobState
from faxmail.store.sqlite import SqliteStore
from test_notify_support import NotifyEnv

NO_FROM = """\
language: en
notify: {keep_sent_tiff_days: 0}
"""
WITH_FROM = """\
language: en
notify: {from_address: "FAX Gateway <fax-gw@example.jp>", keep_sent_tiff_days: 0}
"""


@pytest.fixture
def localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host's FQDN is `localhost`, whatever the test machine's is."""
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "localhost")


def policy(text: str) -> Policy:
    return Policy.model_validate(yaml.safe_load(text) or {})


# --- the default ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "usable"),
    [
        ("mx.example.jp", True),
        ("localhost", False),
        ("localhost.localdomain", False),
        ("vm", False),
        ("box.local", False),
        ("gw.example.jp.", True),
    ],
)
def test_which_host_names_are_mail_domains(host: str, usable: bool) -> None:
    assert is_mail_domain(host) is usable


def test_default_sender_is_the_host_then_the_fax_domain_else_none() -> None:
    assert mail_from(policy(WITH_FROM), "localhost").header == "FAX Gateway <fax-gw@example.jp>"
    assert mail_from(policy(""), "mx.example.jp").header == "faxmail@mx.example.jp"
    fallback = mail_from(policy("fax_address: {domains: [fax.example.jp]}"), "localhost")
    assert (fallback.header, fallback.envelope) == (
        "faxmail@fax.example.jp",
        "faxmail@fax.example.jp",
    )
    assert "this host's name 'localhost' is no mail domain" in fallback.describe()
    none = mail_from(policy(""), "localhost")
    assert none.header is None and none.envelope is None
    assert none.describe().startswith("notify.from_address: not set, and neither this host's")


# --- said at start: the milter, policy check, doctor ---------------------------------------------


def test_milter_refuses_to_start_when_received_faxes_could_not_be_mailed() -> None:
    routed = policy('inbound: {default: ["fax-inbox@example.jp"]}')
    with pytest.raises(ConfigError) as caught:
        check_mail_from(routed, "/etc/faxmail/policy.yaml", "localhost", strict=True)
    (problem,) = caught.value.problems
    assert problem.path == "notify.from_address"
    assert "set notify.from_address in the policy" in problem.message
    # dry-run only warns; a policy that mails nobody (the embedded one) only warns too.
    check_mail_from(routed, "p", "localhost", strict=False)
    check_mail_from(policy(""), "p", "localhost", strict=True)


def test_policy_check_warns_and_fails_when_the_milter_would_refuse(
    tmp_path: Path, localhost: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(WITH_FROM)
    assert main(["policy", "check", str(path)]) == 0
    assert capsys.readouterr().err == ""
    path.write_text("fax_address: {domains: [example.jp]}\n")
    assert main(["policy", "check", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}: warning: mails of faxmail come from faxmail@example.jp" in err
    path.write_text('inbound: {default: ["fax-inbox@example.jp"]}\n')
    assert main(["policy", "check", str(path)]) == 1
    assert f"{path}: warning: notify.from_address: not set" in capsys.readouterr().err


def test_doctor_names_the_key(tmp_path: Path, localhost: None) -> None:
    env = NotifyEnv(tmp_path, 2525, NO_FROM)
    settings = load_settings(env.settings_path)
    install = Install(env.settings_path, settings, policy(NO_FROM))
    (finding,) = check_notify(install)
    assert not finding.ok
    assert finding.line().startswith("FAIL notify: notify.from_address: not set")
    install.policy = policy("fax_address: {domains: [example.jp]}")
    first = next(iter(check_notify(install)))
    assert first.ok and "faxmail@example.jp" in first.text, first


# --- the envelope sender at hand-over time ----------------------------------------------------


@dataclass
class Relay:
    """Stands for the mail system: records each hand-over, refuses the first ``down``."""

    down: int = 0
    handed: list[tuple[str, tuple[str, ...], bytes]] = field(default_factory=list)

    def __call__(
        self, mail: object, sender: str, recipients: tuple[str, ...], message: bytes, **_: object
    ) -> Handover:
        if self.down > 0:
            self.down -= 1
            raise HandoverFailed("relay down")
        self.handed.append((sender, tuple(recipients), message))
        return Handover(accepted=tuple(recipients))


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Relay:
    fake = Relay()
    monkeypatch.setattr(deliver_module, "hand_over", fake)
    return fake


@pytest.fixture
def env(tmp_path: Path) -> Iterator[NotifyEnv]:
    yield NotifyEnv(tmp_path, 2525, NO_FROM)


def context(env: NotifyEnv) -> Context:
    """What one faxmail-notify run loads (a new run reads the policy as it is now)."""
    settings = load_settings(env.settings_path)
    store = SqliteStore(settings.state_dir / "faxmail.sqlite")
    return Context(
        settings, load_yaml(env.policy_path, Policy), store, NotifySpool(settings.notify_spool)
    )


def failed_result(env: NotifyEnv) -> tuple[Context, str]:
    job = env.add_job()
    ctx = context(env)
    assert ctx.store.claim_result(job.id, JobState.FAILED, EventKind.UNANSWERED)
    name = spool_result(ctx, job.id)
    assert name is not None
    return ctx, name


def from_of(message: bytes) -> str:
    return str(email.message_from_bytes(message, policy=email.policy.default)["From"])


def test_result_mail_waits_for_from_address_then_goes_with_it(
    env: NotifyEnv, relay: Relay, localhost: None
) -> None:
    ctx, name = failed_result(env)
    assert deliver(ctx, name) == "pending"
    meta = ctx.spool.read(name)
    assert meta is not None and meta.sender == ""
    assert meta.last_error is not None
    assert "no sender for the mail: notify.from_address: not set" in meta.last_error
    assert relay.handed == []
    ctx.close()

    env.write_policy(WITH_FROM)  # the admin sets it; `faxmail-notify retry` runs
    ctx = context(env)
    assert deliver_all(ctx) == []
    ((sender, rcpts, message),) = relay.handed
    assert (sender, rcpts) == ("fax-gw@example.jp", ("alice@example.jp",))
    assert from_of(message) == "FAX Gateway <fax-gw@example.jp>"
    ctx.close()


def test_a_built_mail_goes_with_the_sender_of_the_policy_at_hand_over(
    env: NotifyEnv, relay: Relay
) -> None:
    env.write_policy(WITH_FROM.replace("fax-gw@example.jp", "old-gw@example.jp"))
    relay.down = 1
    ctx, name = failed_result(env)
    assert deliver(ctx, name) == "pending"  # built with the old From:, the relay was down
    assert from_of((ctx.spool.root / name / "message.eml").read_bytes()).endswith(
        "<old-gw@example.jp>"
    )
    ctx.close()

    env.write_policy(WITH_FROM)
    ctx = context(env)
    assert deliver_all(ctx) == []
    ((sender, _, message),) = relay.handed
    assert sender == "fax-gw@example.jp"  # not the one frozen in meta.json
    assert from_of(message) == "FAX Gateway <fax-gw@example.jp>"
    ctx.close()


def test_notify_says_at_start_that_it_has_no_sender(env: NotifyEnv, localhost: None) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        load_context(env.settings_path).close()  # what every faxmail-notify run does first
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved
    assert "ERROR faxmail_notify: notify.from_address: not set, and neither" in env.log()
